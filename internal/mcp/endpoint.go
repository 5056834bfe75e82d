package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/internal/atomicfile"
)

// openKeyDir makes key_dir if it is missing (0700), so that no one else
// can make it later, and opens it. Each principal's keys are read back
// from it under a name anyone can compute: the directory it opened is
// refused when another user could write it (writable by its group or
// others, or owned by another user), where that user could plant keys
// of its own for a principal.
func openKeyDir(kd string) (*os.Root, error) {
	if err := os.MkdirAll(kd, 0o700); err != nil {
		return nil, fmt.Errorf("%w: key_dir: %w", ErrConfig, identity.SafeReadError(err))
	}
	root, err := os.OpenRoot(kd)
	if err != nil {
		return nil, fmt.Errorf("%w: key_dir: %w", ErrConfig, identity.SafeReadError(err))
	}
	fi, err := root.Stat(".")
	switch {
	case err != nil:
		err = fmt.Errorf("%w: key_dir: %w", ErrConfig, identity.SafeReadError(err))
	case !fi.IsDir():
		err = fmt.Errorf("%w: key_dir %s is not a directory", ErrConfig, identity.SafePath(kd))
	default:
		if why := atomicfile.OpenDir(fi); why != "" {
			err = fmt.Errorf("%w: key_dir %s (%s): another user could plant a principal's keys there", ErrConfig, identity.SafePath(kd), why)
		}
	}
	if err != nil {
		_ = root.Close()
		return nil, err
	}
	return root, nil
}

// MaxRequestBytes bounds one HTTP request body.
const MaxRequestBytes = 1 << 20

// JSON-RPC error codes of the endpoint (the server-defined range).
const (
	// CodeDenied: the gateway denied the call; data carries the reason.
	CodeDenied = -32010
	// CodeReplayed: the JSON-RPC id was already used with this token.
	CodeReplayed = -32011
	// CodeNoReply: no verified reply in time (held for approval and not
	// answered within approval_wait, or the tool did not answer).
	// The request may still be decided, and the tool run, later: the
	// gateway holds it until its approval or delivery ends.
	CodeNoReply = -32012
	// CodeNotWithdrawn: tasks/cancel of a call already sent to the
	// gateway (deciding it, or holding it for approval). The agent
	// cannot withdraw it there: it may still be granted and the tool
	// run, so the task goes on and reports the outcome.
	CodeNotWithdrawn = -32013
	// CodeBusy: the principal has as many calls in flight, synchronous
	// and tasks together, as the endpoint allows (64); nothing was sent.
	CodeBusy = -32014
)

// DeniedData is the data of a CodeDenied error (and of CodeReplayed and
// CodeNoReply).
type DeniedData struct {
	// Reason is the gateway's reason code (package reason), as its
	// verified decision notice gives it; which gate and policy decided
	// are for operators (the denied stream and the audit log).
	Reason string `json:"reason"`
}

// Endpoint is the MCP server agentgw exposes to MCP clients.
type Endpoint struct {
	cfg         *Config
	ep          EndpointConfig
	nc          *nats.Conn
	now         func() time.Time
	renewBefore time.Duration
	server      *sdk.Server
	handler     http.Handler
	gate        *listGate // nil: tools/list filters on scopes only
	// keyRoot is key_dir, opened once at the start (openKeyDir): every
	// key file is read and written through it, so a path swapped
	// afterwards (a symlink or a parent another user controls) is never
	// followed. Nil without key_dir. Close leaves it open: a request
	// already past its authentication may still look a principal up.
	keyRoot  *os.Root
	bounds   bounds
	inflight atomic.Int64 // tools/call in flight, every principal's (takeCall)

	mu         sync.Mutex
	principals map[string]*principal
	sessions   map[[32]byte]*session // by sha256 of each spelling of the bearer token
	signed     map[[32]byte]*session // by sha256 of the token's signed content
	expiring   expiryHeap            // the sessions, soonest expiry first
	idle       map[string]*principal // principals with no live session
	tasks      *taskRegistry

	onReject func(tool string, err error) // WithOnReject; nil: none
}

// EndpointOption configures an Endpoint.
type EndpointOption func(*Endpoint)

// WithClock sets the clock (for tests). Default time.Now.
func WithClock(now func() time.Time) EndpointOption { return func(e *Endpoint) { e.now = now } }

// WithOnReject has fn called (by several calls at once) with the tool's
// name and the error of the first decision notice or reply of a
// tools/call that does not verify (client.WaitOptions.OnReject); it and
// any after it are ignored. One whose token names a gateway key not
// among trusted_gateways is marked client.ErrUnknownKey, which is how an
// endpoint left out of a rotation of the gateway's signing key shows.
// The errors are unauthenticated: anyone allowed to publish on the
// agent's reply subject can cause one, naming any key.
func WithOnReject(fn func(tool string, err error)) EndpointOption {
	return func(e *Endpoint) { e.onReject = fn }
}

// NewEndpoint returns the endpoint for cfg, talking to the gateway and
// the token exchange through nc. Close it to end its running tasks.
// Errors wrap ErrConfig.
func NewEndpoint(nc *nats.Conn, cfg *Config, opts ...EndpointOption) (*Endpoint, error) {
	if nc == nil || cfg == nil {
		return nil, fmt.Errorf("%w: nil connection or config", ErrConfig)
	}
	if err := cfg.Endpoint.validate(); err != nil {
		return nil, err
	}
	var keyRoot *os.Root
	if kd := cfg.Endpoint.KeyDir; kd != "" {
		var err error
		if keyRoot, err = openKeyDir(kd); err != nil {
			return nil, err
		}
	}
	e := &Endpoint{
		cfg: cfg, ep: cfg.Endpoint, nc: nc, now: time.Now, renewBefore: 30 * time.Second, bounds: defaultBounds,
		principals: make(map[string]*principal), sessions: make(map[[32]byte]*session), signed: make(map[[32]byte]*session), idle: make(map[string]*principal),
		tasks: newTaskRegistry(), keyRoot: keyRoot,
	}
	if e.ep.MaxCallsInFlight == 0 {
		e.ep.MaxCallsInFlight = DefaultMaxCallsInFlight
	}
	if e.ep.CallTimeout == 0 {
		e.ep.CallTimeout = DefaultCallTimeout
	}
	if e.ep.ApprovalWait == 0 {
		e.ep.ApprovalWait = DefaultApprovalWait
	}
	for _, o := range opts {
		o(e)
	}
	if e.ep.Catalog != "" {
		g, err := newListGate(e.ep.Catalog, e.ep.Policies)
		if err != nil {
			return nil, err
		}
		// A tool's scope also decides who may read its tasks' results
		// (a token whose scopes cover it): it must be the scope the
		// catalog requires, not a looser one.
		for i := range cfg.Tools {
			t := &cfg.Tools[i]
			if target, ok := g.catalog.Load().Lookup(t.Target); ok && target.Scope != t.Scope {
				return nil, fmt.Errorf("%w: tool %q: scope %q is not the scope %q the catalog requires for %s", ErrConfig, t.Name, t.Scope, target.Scope, t.Target)
			}
		}
		e.gate = g
		if iv := e.ep.ReloadInterval; iv >= 0 {
			if iv == 0 {
				iv = DefaultReloadInterval
			}
			e.tasks.wg.Go(func() { g.watch(e.tasks.ctx, iv) })
		}
	}
	// Every result is the principal's (tools/list is narrowed to what
	// it may call): no shared cache may keep one for another.
	e.server = sdk.NewServer(&sdk.Implementation{Name: "agentgw", Version: Version}, &sdk.ServerOptions{
		SetCacheable: func(_ context.Context, _ sdk.Request, c *sdk.Cacheable) { c.CacheScope = "private" },
	})
	for i := range cfg.Tools {
		t := &cfg.Tools[i]
		schema := json.RawMessage(`{"type":"object"}`)
		if t.InputSchema != "" {
			schema = json.RawMessage(t.InputSchema)
		}
		e.server.AddTool(&sdk.Tool{Name: t.Name, Description: t.Description, InputSchema: schema},
			func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
				return e.whileOpen(ctx, req, func(ctx context.Context) (*sdk.CallToolResult, error) { return e.callTool(ctx, t, req) })
			})
	}
	e.server.AddReceivingMiddleware(e.listFilter)
	mcpHandler := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return e.server },
		&sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: true, MaxRequestBodyBytes: MaxRequestBytes})
	metaURL := e.metadataURL()
	bearer := auth.RequireBearerToken(e.verifyToken, &auth.RequireBearerTokenOptions{ResourceMetadataURL: metaURL})
	mux := http.NewServeMux()
	prm := auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
		Resource:               e.ep.Resource,
		AuthorizationServers:   e.ep.AuthorizationServers,
		ScopesSupported:        e.scopes(),
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "agentgw MCP endpoint",
	})
	u, _ := url.Parse(metaURL)
	mux.Handle("GET "+u.Path, prm)
	mux.Handle("OPTIONS "+u.Path, prm)
	mux.Handle(e.path(), e.checkOrigin(bearer(e.refuseReplay(e.withTasks(mcpHandler)))))
	e.handler = mux
	return e, nil
}

// whileOpen runs a synchronous call with ctx, also ended when the
// endpoint closes: a call waiting for the gateway then ends as a closing
// task's does, with -32012 no_reply saying the endpoint closed and the
// call may still run (errClosed), and its answer is written while the
// HTTP server drains rather than the connection cut. Once the endpoint
// is closed a call is refused, nothing sent.
func (e *Endpoint) whileOpen(ctx context.Context, req *sdk.CallToolRequest, call func(context.Context) (*sdk.CallToolResult, error)) (*sdk.CallToolResult, error) {
	if e.tasks.ctx.Err() != nil {
		if x := req.GetExtra(); x != nil {
			refusedUnsent(x.TokenInfo)
		}
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the endpoint is closing: call not sent to the gateway"}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.tasks.ctx, cancel)()
	res, err := call(ctx)
	if rpcErr, ok := errors.AsType[*jsonrpc.Error](err); ok && rpcErr.Code == CodeNoReply && e.tasks.ctx.Err() != nil {
		err = errClosed()
	}
	return res, err
}

// ServeHTTP serves the MCP endpoint at the resource's path and its
// protected resource metadata at /.well-known/oauth-protected-resource
// followed by that path (RFC 9728 §3.1).
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) { e.handler.ServeHTTP(w, r) }

func (e *Endpoint) path() string {
	u, _ := url.Parse(e.ep.Resource)
	if u.Path == "" {
		return "/"
	}
	return u.Path
}

// metadataURL is the protected resource metadata URL of the resource.
func (e *Endpoint) metadataURL() string {
	u, _ := url.Parse(e.ep.Resource)
	p := strings.TrimSuffix(u.Path, "/")
	return u.Scheme + "://" + u.Host + "/.well-known/oauth-protected-resource" + p
}

func (e *Endpoint) scopes() []string {
	var s []string
	for _, t := range e.cfg.Tools {
		if !slices.Contains(s, t.Scope) {
			s = append(s, t.Scope)
		}
	}
	return s
}

// checkOrigin refuses a request whose Origin header is present and not
// allowed (DNS rebinding, cross-site browsers), and on a loopback
// listener one whose Host is not a loopback host.
func (e *Endpoint) checkOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && !slices.Contains(e.ep.AllowedOrigins, o) {
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
		// DNS rebinding: an endpoint listening on loopback answers only
		// requests addressed to a loopback host, as the MCP SDK's handler
		// does; here for every request, the tasks the endpoint answers
		// itself included.
		if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && local != nil &&
			loopback(local.String()) && !loopback(r.Host) {
			http.Error(w, "invalid Host header", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopback reports whether addr (host, or host:port) is localhost or a
// loopback IP address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.Trim(addr, "[]")
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// refuseReplay refuses a tools/call whose JSON-RPC id was already used
// with the same bearer token while the token is valid: a captured
// request replayed as is (same token, same body) is refused before it
// becomes a new envelope. Every request id a client sends within a token's
// lifetime must therefore be unique, which MCP requires of a session's
// requests anyway.
func (e *Endpoint) refuseReplay(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
		if err != nil {
			http.Error(w, "request body too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '[' {
			// JSON-RPC batches left MCP in 2025-06-18; one would carry a
			// replayed tools/call past the id check.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": nil, "error": map[string]any{
				"code": jsonrpc.CodeInvalidRequest, "message": "JSON-RPC batches are not accepted"}})
			return
		}
		msg, err := readRPC(body)
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": nil, "error": map[string]any{
				"code": jsonrpc.CodeParseError, "message": err.Error()}})
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), rpcKey{}, msg)) // for withTasks
		if msg.Method != "tools/call" || len(msg.ID) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		s := sessionOfInfo(auth.TokenInfoFromContext(r.Context()))
		if s == nil {
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		}
		switch s.useCall(msg.ID, body) {
		case callReplayed:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": msg.ID, "error": map[string]any{
				"code": CodeReplayed, "message": "request already made with this token",
				"data": DeniedData{Reason: "replay"},
			}})
			return
		case callSpent:
			// A 401 has the client get a fresh token.
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="this token has made its calls", resource_metadata="`+e.metadataURL()+`"`)
			http.Error(w, "this token has made its calls: get a fresh one", http.StatusUnauthorized)
			return
		}
		// The info is this HTTP request's own (verifyToken makes one per
		// request), and the SDK hands the same to the tool handler.
		id := msg.ID
		auth.TokenInfoFromContext(r.Context()).Extra[unsentKey] = func() { s.forgetCall(id, body) }
		next.ServeHTTP(w, r)
	})
}

// listFilter narrows tools/list to the tools the principal may call:
// with the gateway's catalog and policies configured, those that pass the
// catalog gate and the authorize-stage policy decision for it (listGate);
// otherwise those whose scope its credential holds. Either way it is a
// hint: every call passes every gate at the gateway.
func (e *Endpoint) listFilter(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		res, err := next(ctx, method, req)
		if method != "tools/list" || err != nil {
			return res, err
		}
		lr, ok := res.(*sdk.ListToolsResult)
		if !ok {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "unexpected tools/list result"}
		}
		var scopes []string
		var who policy.Principal
		if x := req.GetExtra(); x != nil {
			if s := sessionOfInfo(x.TokenInfo); s != nil {
				_, scopes, who = s.credential()
			}
		}
		allowed := func(t *Tool) bool { return covered(scopes, t.Scope) }
		if e.gate != nil {
			now := e.now()
			allowed = func(t *Tool) bool {
				return who.Agent != "" && e.gate.allows(t, e.cfg.Tenant, who, now)
			}
		}
		out := *lr
		out.Tools = []*sdk.Tool{}
		for _, t := range lr.Tools {
			if tool, ok := e.cfg.tool(t.Name); ok && allowed(tool) {
				out.Tools = append(out.Tools, t)
			}
		}
		return &out, nil
	}
}

// covered reports whether granted holds scope, exactly or by a trailing
// "*" wildcard (as credential scopes are matched by the gateway).
func covered(granted []string, scope string) bool {
	for _, g := range granted {
		if g == scope || strings.HasSuffix(g, "*") && strings.HasPrefix(scope, strings.TrimSuffix(g, "*")) {
			return true
		}
	}
	return false
}

// sessionOfInfo is the session of a verified token's info, or nil.
func sessionOfInfo(info *auth.TokenInfo) *session {
	if info == nil {
		return nil
	}
	s, _ := info.Extra[sessionKey].(*session)
	return s
}

func sessionOf(req *sdk.CallToolRequest) (*session, error) {
	if x := req.GetExtra(); x != nil {
		if s := sessionOfInfo(x.TokenInfo); s != nil {
			return s, nil
		}
	}
	return nil, errors.New("unauthenticated call")
}
