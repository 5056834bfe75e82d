package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
)

// natsContext is a context of the nats CLI: one JSON file in
// <config>/nats/context/<name>.json, where <config> is $XDG_CONFIG_HOME or
// ~/.config, the selected one named in <config>/nats/context.txt. These
// are the rules of the nats CLI's natscontext package (module
// github.com/nats-io/jsm.go), read here rather than imported: that package
// pulls in an expression language, a second YAML library and the
// JetStream management API (36 packages) to read one JSON file.
type natsContext struct {
	name string // the context's name, or its file when --context named one
	// Fields agentgw uses.
	URL         string `json:"url"`
	User        string `json:"user"`
	Password    string `json:"password"`
	Token       string `json:"token"`
	Creds       string `json:"creds"`
	NKey        string `json:"nkey"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
	InboxPrefix string `json:"inbox_prefix"`
	JSAPIPrefix string `json:"jetstream_api_prefix"`
	JSDomain    string `json:"jetstream_domain"`
	TLSFirst    bool   `json:"tls_first"`
	// Fields that change how the nats CLI connects and that agentgw does
	// not implement: a context setting one is refused, not half obeyed.
	NSC        string `json:"nsc"`
	UserJWT    string `json:"user_jwt"`
	UserSeed   string `json:"user_seed"`
	SocksProxy string `json:"socks_proxy"`
	WinStore   string `json:"windows_cert_store"`
}

// natsConfigDir is where the nats CLI keeps its configuration:
// $XDG_CONFIG_HOME/nats, or ~/.config/nats.
func natsConfigDir() (string, error) {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "nats"), nil
	}
	u, err := user.Current()
	if err != nil || u.HomeDir == "" {
		home, herr := os.UserHomeDir()
		if herr != nil {
			return "", fmt.Errorf("cannot find the home directory for NATS contexts: %w", herr)
		}
		return filepath.Join(home, ".config", "nats"), nil
	}
	return filepath.Join(u.HomeDir, ".config", "nats"), nil
}

// selectedContext returns the name in context.txt, empty when none is
// selected (or there is no configuration directory).
func selectedContext() string {
	dir, err := natsConfigDir()
	if err != nil {
		return ""
	}
	data, err := os.ReadFile(filepath.Join(dir, "context.txt"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// loadContext loads the context name: an existing file ending in .json is
// read as a context file; otherwise name is a context name (no "/", "\"
// or ".."). source says where the name came from, for errors.
func loadContext(name, source string) (*natsContext, error) {
	path := name
	if st, err := os.Stat(name); err != nil || st.IsDir() || !strings.HasSuffix(name, ".json") {
		if name == "" || strings.Contains(name, "..") || strings.ContainsAny(name, `/\`) {
			return nil, fmt.Errorf("NATS context %q (%s): not a context name (no \"/\", \"\\\" or \"..\") nor an existing .json file", name, source)
		}
		dir, err := natsConfigDir()
		if err != nil {
			return nil, err
		}
		path = filepath.Join(dir, "context", name+".json")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("NATS context %q (%s): no such context: %s does not exist ('nats context ls' lists them)", name, source, path)
	}
	if err != nil {
		return nil, fmt.Errorf("NATS context %q (%s): %w", name, source, err)
	}
	nctx := &natsContext{name: name}
	if err := json.Unmarshal(data, nctx); err != nil {
		return nil, fmt.Errorf("NATS context %q (%s): %s is not a context file: %v", name, source, path, jsonErrorNoValue(err))
	}
	for field, v := range map[string]string{"nsc": nctx.NSC, "user_jwt": nctx.UserJWT, "user_seed": nctx.UserSeed, "socks_proxy": nctx.SocksProxy, "windows_cert_store": nctx.WinStore} {
		if v != "" {
			return nil, fmt.Errorf("NATS context %q sets %s, which agentgw does not support: use a context with url and creds or nkey (or user and password, or token)", name, field)
		}
	}
	for field, p := range map[string]*string{"creds": &nctx.Creds, "nkey": &nctx.NKey, "cert": &nctx.Cert, "key": &nctx.Key, "ca": &nctx.CA} {
		v, err := contextPath(*p)
		if err != nil {
			return nil, fmt.Errorf("NATS context %q, %s: %w", name, field, err)
		}
		*p = v
	}
	return nctx, nil
}

// contextPath expands a path of a context as the nats CLI does:
// environment variables, a leading ~, and a file:// prefix. Other URI
// schemes (op://, nsc://, env://, data:) are refused.
func contextPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	p = strings.TrimPrefix(p, "file://")
	if i := strings.Index(p, "://"); i >= 2 && !strings.ContainsAny(p[:i], `/\`) {
		return "", fmt.Errorf("the %s:// scheme is not supported by agentgw: name a file", p[:i])
	}
	if strings.HasPrefix(p, "data:") {
		return "", errors.New("inline data: values are not supported by agentgw: name a file")
	}
	p = os.ExpandEnv(p)
	if strings.HasPrefix(p, "~") {
		if u, err := user.Current(); err == nil {
			p = strings.Replace(p, "~", u.HomeDir, 1)
		}
	}
	return p, nil
}

// jsonErrorNoValue reports a JSON decode error without quoting the input:
// a context file holds passwords and tokens.
func jsonErrorNoValue(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %s: want %s", te.Field, te.Type)
	}
	return "invalid JSON"
}
