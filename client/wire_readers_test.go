package client

import (
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/identity"
)

// The vectors of what a reader must accept and refuse where the same
// bytes could be read two ways (docs/wire.md): .creds files
// (credential.json creds_cases), seed files (credential.json
// seed_file_cases), approval requests and their times (approval.json
// request_cases and time_cases) and header blocks (headers.json). The Go and the
// TypeScript SDK read every case; each must come out as the file says.

// wvCredsCase is a .creds file, as text or (when it is not UTF-8) hex.
type wvCredsCase struct {
	Name     string `json:"name"`
	Creds    string `json:"creds,omitempty"`
	CredsHex string `json:"creds_hex,omitempty"`
	Want     string `json:"want"`
}

// wvRequestCase is an approval request body on approval.json's request
// subject; an accepted one reads with the fields of the JSON text Fields.
type wvRequestCase struct {
	Name   string `json:"name"`
	Body   string `json:"body"`
	Want   string `json:"want"`
	Fields string `json:"fields,omitempty"`
}

// wvSeedFileCase is a seed file, as text or (when it is not UTF-8) hex,
// read for a "user" or a "curve" seed; an accepted one reads as the key
// PublicKey.
type wvSeedFileCase struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	File      string `json:"file,omitempty"`
	FileHex   string `json:"file_hex,omitempty"`
	Want      string `json:"want"`
	PublicKey string `json:"public_key,omitempty"`
}

// wvTimeCase is the approval request with RequestedAt and Deadline in
// place of its own (Body): a reader reads them as the instants
// RequestedAtUnixNano and DeadlineUnixNano (Unix nanoseconds in decimal,
// "" for no time) and at Now (NowUnixNano) finds the request Want,
// "expired" or "pending".
type wvTimeCase struct {
	Name                string `json:"name"`
	RequestedAt         string `json:"requested_at"`
	Deadline            string `json:"deadline"`
	Body                string `json:"body"`
	RequestedAtUnixNano string `json:"requested_at_unix_nano"`
	DeadlineUnixNano    string `json:"deadline_unix_nano"`
	Now                 string `json:"now"`
	NowUnixNano         string `json:"now_unix_nano"`
	Want                string `json:"want"`
}

// wvHeaderBlock is a NATS header block and the value a reader takes for
// each header named ("" when it reads none).
type wvHeaderBlock struct {
	Name  string     `json:"name"`
	Block string     `json:"block"`
	Reads []wvHeader `json:"reads"`
}

type wvHeadersFile struct {
	About  string          `json:"about"`
	Blocks []wvHeaderBlock `json:"blocks"`
}

const (
	wvAccepted = "accepted"
	wvRefused  = "refused"
	wvExpired  = "expired"
	wvPending  = "pending"
)

// seed is the seed of the key labelled label.
func (w *wvWorld) seed(label string) string {
	s, err := w.keys[label].Seed()
	if err != nil {
		w.t.Fatal(err)
	}
	return string(s)
}

// credsCases are .creds files around the agent's credential.
func (w *wvWorld) credsCases(agent wvCredential) []wvCredsCase {
	seed := w.seed
	block := func(kind, value string) string {
		return "-----BEGIN " + kind + "-----\n" + value + "\n------END " + kind + "------\n"
	}
	jwtBlock := func(jwt string) string { return block("NATS AGENTGW-CREDENTIAL JWT", jwt) }
	seedBlock := func(s string) string { return block("USER NKEY SEED", s) }
	file := func(jwt, s string) string { return jwtBlock(jwt) + "\n" + seedBlock(s) }
	// The agent's claims with more members, under its header and
	// signature: a reader does not check the signature, only the form.
	claims := func(more string) string {
		return agent.HeaderB64URL + "." + b64url.EncodeToString([]byte("{"+more+agent.ClaimsJSON[1:])) + "." + agent.SignatureB64URL
	}
	crlf := func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
	s := seed("agent")
	ok := func(name, creds string) wvCredsCase { return wvCredsCase{Name: name, Creds: creds, Want: wvAccepted} }
	no := func(name, creds string) wvCredsCase { return wvCredsCase{Name: name, Creds: creds, Want: wvRefused} }
	return []wvCredsCase{
		ok("crlf_line_ends", crlf(agent.Creds)),
		ok("text_around_and_a_third_block", "# the agent\n"+agent.Creds+block("NOTE", "more")+"trailing text"),
		ok("shortest_dashed_lines_no_final_line_end", "------\n"+agent.JWT+"\n------\n------\n"+s+"\n------"),
		ok("claims_eight_levels", file(claims(`"x":[[[[[[[]]]]]]],`), s)),
		{Name: "not_utf8", CredsHex: hex.EncodeToString([]byte(agent.Creds + "\xff\n")), Want: wvRefused},
		no("a_seed_line_not_a_seed_block", jwtBlock(agent.JWT)+"\n"+s+"\n"),
		no("a_seed_line_not_a_seed_block_crlf", crlf(jwtBlock(agent.JWT)+"\n")+s+"\r\n"),
		no("seed_block_first", seedBlock(s)+"\n"+jwtBlock(agent.JWT)),
		no("seed_with_a_character_more", file(agent.JWT, s+"A")),
		no("seed_of_another_user", file(agent.JWT, seed("consumer"))),
		no("account_seed", file(agent.JWT, seed("issuer"))),
		no("claims_with_a_case_variant", file(claims(`"SUB":"x",`), s)),
		no("claims_nine_levels", file(claims(`"x":[[[[[[[[]]]]]]]],`), s)),
		no("claims_member_twice", file(claims(`"sub":"x",`), s)),
	}
}

// requestCases are the approval request body with a number or a member
// changed.
func wvRequestCases(t testing.TB, body string) []wvRequestCase {
	const fields = `{"amount_cents":990000,"currency":"EUR"}`
	if !strings.Contains(body, `"fields":`+fields) || !strings.Contains(body, `"deadline":"2026-11-26T01:23:41Z"`) {
		t.Fatal("the approval request has other fields or another deadline")
	}
	edit := func(old, new string) string { return strings.Replace(body, old, new, 1) }
	amount := func(n string) string { return edit(`"amount_cents":990000`, `"amount_cents":`+n) }
	ok := func(name, body, amount string) wvRequestCase {
		return wvRequestCase{Name: name, Body: body, Want: wvAccepted, Fields: `{"amount_cents":` + amount + `,"currency":"EUR"}`}
	}
	no := func(name, body string) wvRequestCase { return wvRequestCase{Name: name, Body: body, Want: wvRefused} }
	nested := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	return []wvRequestCase{
		ok("largest_double", amount("1.7976931348623157e308"), "1.7976931348623157e308"),
		ok("rounds_down_to_the_largest_double", amount("1.7976931348623158e308"), "1.7976931348623157e308"),
		ok("underflows_to_zero", amount("1e-400"), "0"),
		ok("smallest_subnormal", amount("5e-324"), "5e-324"),
		ok("integer_rounded_to_a_double", amount("9007199254740993"), "9007199254740992"),
		ok("number_of_64_bytes", amount("1"+strings.Repeat("0", 63)), "1e63"),
		ok("exponent_of_1000", amount("1e-1000"), "0"),
		ok("nested_64_levels", amount(nested(62)), nested(62)),
		ok("case_variant_is_another_member", edit(`"agent":`, `"Agent":"x","agent":`), "990000"),
		ok("unknown_member_may_overflow", edit(`"risk":`, `"extra":1e400,"risk":`), "990000"),
		ok("deadline_with_an_offset", edit(`"deadline":"2026-11-26T01:23:41Z"`, `"deadline":"2026-11-26T02:23:41+01:00"`), "990000"),
		no("overflows", amount("1e400")),
		no("overflows_negative", amount("-1e400")),
		no("rounds_up_to_infinity", amount("1.7976931348623159e308")),
		no("overflows_nested", amount(`[{"cents":1e309}]`)),
		no("number_of_65_bytes", amount("1"+strings.Repeat("0", 64))),
		no("exponent_beyond_1000", amount("1e-1001")),
		no("nested_65_levels", amount(nested(63))),
		no("member_twice", edit(`"risk":`, `"risk":"low","risk":`)),
		no("member_twice_in_fields", amount(`1,"amount_cents":2`)),
		no("lone_surrogate_escape", edit(`"currency":"EUR"`, `"currency":"\ud800"`)),
		no("fields_not_an_object", edit(`"fields":`+fields, `"fields":[]`)),
		no("risk_not_a_string", edit(`"risk":"critical"`, `"risk":4`)),
		no("deadline_in_lower_case", edit(`"deadline":"2026-11-26T01:23:41Z"`, `"deadline":"2026-11-26t01:23:41z"`)),
		no("deadline_not_a_date", edit(`"deadline":"2026-11-26T01:23:41Z"`, `"deadline":"2026-11-31T01:23:41Z"`)),
		no("data_after_the_object", body+" {}"),
	}
}

// seedFileCases are seed files of the agent's user and curve seeds.
func (w *wvWorld) seedFileCases(agent wvCredential) []wvSeedFileCase {
	seed := w.seed
	u, x := seed("agent"), seed("agent-xkey")
	user := func(name, file string) wvSeedFileCase {
		return wvSeedFileCase{Name: name, Role: "user", File: file, Want: wvAccepted, PublicKey: w.pubs["agent"]}
	}
	curve := func(name, file string) wvSeedFileCase {
		return wvSeedFileCase{Name: name, Role: "curve", File: file, Want: wvAccepted, PublicKey: w.pubs["agent-xkey"]}
	}
	no := func(role, name, file string) wvSeedFileCase {
		return wvSeedFileCase{Name: name, Role: role, File: file, Want: wvRefused}
	}
	seedBlock := "-----BEGIN USER NKEY SEED-----\n" + u + "\n------END USER NKEY SEED------\n"
	jwtBlock := agent.Creds[:strings.Index(agent.Creds, "\n\n")+1]
	return []wvSeedFileCase{
		user("as_agentgw_writes_it", u+"\n"),
		user("no_final_line_end", u),
		user("crlf_and_blank_lines", "\r\n"+u+"\r\n\r\n"),
		user("spaces_and_tabs_around", " \t"+u+" \t\r\n"),
		user("public_key_and_comment_lines", "# agent\n"+u+"\n"+w.pubs["agent"]+"\n"),
		user("creds_file", agent.Creds),
		curve("curve_seed", x+"\n"),
		curve("curve_seed_crlf", x+"\r\n"),
		no("user", "empty", ""),
		no("user", "account_seed_before_the_user_seed", seed("issuer")+"\n"+u+"\n"),
		no("user", "account_seed", seed("issuer")+"\n"),
		no("user", "two_user_seeds", u+"\n"+seed("consumer")+"\n"),
		no("user", "the_same_seed_twice", u+"\n"+u+"\n"),
		no("user", "seed_with_a_character_more", u+"A\n"),
		no("user", "seed_with_a_character_more_before_the_seed", u+"A\n"+u+"\n"),
		no("user", "seed_with_a_character_less", u[:len(u)-1]+"\n"),
		no("user", "lower_case_seed", strings.ToLower(u)+"\n"),
		no("user", "carriage_return_inside_the_seed", u[:20]+"\r"+u[20:]+"\n"),
		no("user", "no_break_space_after_the_seed", u+"\u00a0\n"),
		no("user", "next_line_after_the_seed", u+"\u0085\n"),
		no("user", "byte_order_mark_before_the_seed", "\ufeff"+u+"\n"),
		no("user", "vertical_tab_before_the_seed", "\v"+u+"\n"),
		{Name: "not_utf8", Role: "user", FileHex: hex.EncodeToString([]byte(u + "\n\xff\n")), Want: wvRefused},
		no("user", "curve_seed", x+"\n"),
		no("user", "creds_with_a_seed_line_not_a_seed_block", jwtBlock+"\n"+u+"\n"),
		no("user", "decorated_seed_alone", seedBlock),
		no("curve", "user_seed", u+"\n"),
		no("curve", "user_seed_before_the_curve_seed", u+"\n"+x+"\n"),
		no("curve", "curve_seed_with_a_character_more", x+"A\n"),
		{Name: "curve_seed_not_utf8", Role: "curve", FileHex: hex.EncodeToString([]byte(x + "\n\xff\n")), Want: wvRefused},
		no("curve", "creds_file", agent.Creds),
	}
}

// wvTimeCases are the approval request with other times: as the gateway
// writes them (nanoseconds, trailing zeros dropped) and as a reader must
// also read them (offsets, more than nine digits, the zero time).
func wvTimeCases(t testing.TB, body string) []wvTimeCase {
	const (
		at       = `"requested_at":"2026-11-26T01:08:41Z"`
		deadline = `"deadline":"2026-11-26T01:23:41Z"`
	)
	if !strings.Contains(body, at+","+deadline) {
		t.Fatal("the approval request has other times")
	}
	unixNano := func(s string) string {
		tt, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		if tt.IsZero() {
			return ""
		}
		n := new(big.Int).Mul(big.NewInt(tt.Unix()), big.NewInt(1e9))
		return n.Add(n, big.NewInt(int64(tt.Nanosecond()))).String()
	}
	c := func(name, requestedAt, dl, now, want string) wvTimeCase {
		b := strings.Replace(body, at+","+deadline, `"requested_at":"`+requestedAt+`","deadline":"`+dl+`"`, 1)
		return wvTimeCase{Name: name, RequestedAt: requestedAt, Deadline: dl, Body: b,
			RequestedAtUnixNano: unixNano(requestedAt), DeadlineUnixNano: unixNano(dl),
			Now: now, NowUnixNano: unixNano(now), Want: want}
	}
	const req = "2026-11-26T01:08:41Z"
	return []wvTimeCase{
		c("as_the_gateway_writes_them_at_the_deadline", "2026-11-26T01:08:41.123456789Z", "2026-11-26T01:23:41.123456789Z",
			"2026-11-26T01:23:41.123456789Z", wvPending),
		c("a_nanosecond_after_the_deadline", req, "2026-11-26T01:23:41.123456789Z", "2026-11-26T01:23:41.12345679Z", wvExpired),
		c("a_nanosecond_before_the_deadline", req, "2026-11-26T01:23:41.12345679Z", "2026-11-26T01:23:41.123456789Z", wvPending),
		c("half_a_millisecond_deadline_passed", req, "2026-11-26T01:23:41.0005Z", "2026-11-26T01:23:41.000500001Z", wvExpired),
		c("whole_second_deadline_at_it", req, "2026-11-26T01:23:41Z", "2026-11-26T01:23:41Z", wvPending),
		c("whole_second_deadline_a_nanosecond_after", req, "2026-11-26T01:23:41Z", "2026-11-26T01:23:41.000000001Z", wvExpired),
		c("a_millisecond_after_the_deadline", req, "2026-11-26T01:23:41.000999Z", "2026-11-26T01:23:41.001Z", wvExpired),
		c("tenth_digit_dropped_not_rounded", "2026-11-26T01:08:41.9999999999Z", "2026-11-26T01:23:41.9999999999Z",
			"2026-11-26T01:23:42Z", wvExpired),
		c("offset_with_a_fraction", "2026-11-26T02:08:41.5+01:00", "2026-11-26T02:23:41.0005+01:00", "2026-11-26T01:23:41.0006Z", wvExpired),
		c("before_1970", "1969-12-31T23:59:58.0000001Z", "1969-12-31T23:59:59.9995Z", "1969-12-31T23:59:59.9996Z", wvExpired),
		c("before_1970_at_the_deadline", req, "1969-12-31T23:59:59.9995Z", "1969-12-31T23:59:59.9995Z", wvPending),
		c("zero_time_is_no_deadline", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "2026-11-26T01:23:42Z", wvPending),
		c("zero_time_with_an_offset", req, "0001-01-01T01:00:00+01:00", "2026-11-26T01:23:42Z", wvPending),
		c("zero_time_with_a_tenth_digit", req, "0001-01-01T00:00:00.0000000001Z", "2026-11-26T01:23:42Z", wvPending),
		c("a_nanosecond_after_the_zero_time", req, "0001-01-01T00:00:00.000000001Z", "2026-11-26T01:23:42Z", wvExpired),
	}
}

// headersFile holds header blocks as a NATS client receives them.
func wvHeadersVectors() wvHeadersFile {
	const id = "5d1e0c3a9b7f4e21a6c8d2f0b4e6a801"
	blk := func(lines ...string) string { return "NATS/1.0\r\n" + strings.Join(lines, "\r\n") + "\r\n\r\n" }
	reads := func(notice, msgID string) []wvHeader {
		return []wvHeader{{"Agentgw-Notice", notice}, {"Agentgw-Message-Id", msgID}}
	}
	mid := "Agentgw-Message-Id: " + id
	return wvHeadersFile{
		About: "NATS header blocks (docs/wire.md, \"Headers\") and the value a reader takes for each header in reads (\"\" when none): " +
			"the value is what follows the colon less the spaces and tabs right after it, compared exactly, so trailing white space " +
			"or any other leading white space makes another value; lines end at LF (less a CR before it); a name's first value counts; " +
			"a block that does not start NATS/1.0, has anything but a space or tab after NATS/1.0 on its first line (then a status of at least three characters), " +
			"has a line without a colon or no empty line reads as no headers.",
		Blocks: []wvHeaderBlock{
			{"as_the_gateway_writes", blk("Agentgw-Notice: decision", mid), reads("decision", id)},
			{"no_space_after_the_colon", blk("Agentgw-Notice:decision", "Agentgw-Message-Id:"+id), reads("decision", id)},
			{"spaces_and_tabs_after_the_colon", blk("Agentgw-Notice: \t decision", mid), reads("decision", id)},
			{"trailing_space_and_tab", blk("Agentgw-Notice: decision ", mid+"\t"), reads("decision ", id+"\t")},
			{"no_break_spaces", blk("Agentgw-Notice: \u00a0decision\u00a0", mid), reads("\u00a0decision\u00a0", id)},
			{"byte_order_mark", blk("Agentgw-Notice: \ufeffdecision", mid), reads("\ufeffdecision", id)},
			{"form_feed_after_the_colon", blk("Agentgw-Notice:\fdecision", mid), reads("\fdecision", id)},
			{"first_of_two_values", blk("Agentgw-Notice: decision ", "Agentgw-Notice: decision", mid), reads("decision ", id)},
			{"name_in_another_case", blk("agentgw-notice: decision", mid), reads("", id)},
			{"space_before_the_colon", blk("Agentgw-Notice : decision", mid), reads("", id)},
			{"line_feeds_alone", "NATS/1.0\nAgentgw-Notice: decision\n" + mid + "\n\n", reads("decision", id)},
			{"line_feed_inside_a_value", blk("Agentgw-Notice: x\nAgentgw-Notice: decision", mid), reads("x", id)},
			{"inline_status", "NATS/1.0 503\r\nAgentgw-Notice: decision\r\n" + mid + "\r\n\r\n", reads("decision", id)},
			{"line_without_a_colon", blk("Agentgw-Notice: decision", "garbage", mid), reads("", "")},
			{"no_empty_line", "NATS/1.0\r\nAgentgw-Notice: decision\r\n" + mid + "\r\n", reads("", "")},
			{"not_nats_1_0", "NATS/2.0\r\nAgentgw-Notice: decision\r\n" + mid + "\r\n\r\n", reads("", "")},
			{"tab_before_the_status", "NATS/1.0\t503\r\nAgentgw-Notice: decision\r\n" + mid + "\r\n\r\n", reads("decision", id)},
			{"no_space_before_the_status", "NATS/1.0503\r\nAgentgw-Notice: decision\r\n" + mid + "\r\n\r\n", reads("", "")},
			{"letters_after_nats_1_0", "NATS/1.0XYZ\r\nAgentgw-Notice: decision\r\n" + mid + "\r\n\r\n", reads("", "")},
			{"vertical_tab_before_the_status", "NATS/1.0\v503\r\nAgentgw-Notice: decision\r\n" + mid + "\r\n\r\n", reads("", "")},
			{"short_status", "NATS/1.0 50\r\nAgentgw-Notice: decision\r\n" + mid + "\r\n\r\n", reads("", "")},
		},
	}
}

func TestWireVectorCredsCases(t *testing.T) {
	f := wvLoad[wvCredentialsFile](t, "credential.json")
	agent := f.Credentials[0]
	for _, c := range f.CredsCases {
		t.Run(c.Name, func(t *testing.T) {
			data := []byte(c.Creds)
			if c.CredsHex != "" {
				data = wvUnhex(t, c.CredsHex)
			}
			_, kp, err := identity.ParseCreds(data)
			if got := wvVerdict(err); got != c.Want {
				t.Fatalf("ParseCreds = %v; want %s", err, c.Want)
			}
			if err == nil {
				if pub, _ := kp.PublicKey(); pub != agent.Request.Subject {
					t.Errorf("ParseCreds key %s; want the agent's", pub)
				}
			}
		})
	}
}

func TestWireVectorRequestCases(t *testing.T) {
	f := wvLoad[wvApprovalFile](t, "approval.json")
	for _, c := range f.RequestCases {
		t.Run(c.Name, func(t *testing.T) {
			req, err := DecodeRequest(f.Request.Subject, []byte(c.Body), wvTenant)
			if got := wvVerdict(err); got != c.Want {
				t.Fatalf("DecodeRequest = %v; want %s", err, c.Want)
			}
			var want map[string]any
			if err == nil && (json.Unmarshal([]byte(c.Fields), &want) != nil || !reflect.DeepEqual(req.Fields, want)) {
				t.Errorf("fields = %v; want %s", req.Fields, c.Fields)
			}
		})
	}
}

func TestWireVectorSeedFileCases(t *testing.T) {
	f := wvLoad[wvCredentialsFile](t, "credential.json")
	if len(f.SeedFileCases) == 0 {
		t.Fatal("no seed file cases")
	}
	dir := t.TempDir()
	for i, c := range f.SeedFileCases {
		t.Run(c.Name, func(t *testing.T) {
			data := []byte(c.File)
			if c.FileHex != "" {
				data = wvUnhex(t, c.FileHex)
			}
			path := filepath.Join(dir, "seed"+strings.Repeat("_", i))
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			var pub string
			var err error
			switch c.Role {
			case "user":
				pub, err = UserKey(path)
				if got, want := wvVerdict(wvUserOptionsSign(path)), c.Want; got != want {
					t.Errorf("UserOptions and its signature: %s; want %s", got, want)
				}
			case "curve":
				kp, cerr := readCurveSeed(path)
				if err = cerr; err == nil {
					pub, _ = kp.PublicKey()
				}
			default:
				t.Fatalf("role %q", c.Role)
			}
			if got := wvVerdict(err); got != c.Want {
				t.Fatalf("read as a %s seed file = %v; want %s", c.Role, err, c.Want)
			}
			if err == nil && pub != c.PublicKey {
				t.Errorf("key %s; want %s", pub, c.PublicKey)
			}
		})
	}
}

// wvUserOptionsSign applies UserOptions(path) and signs a nonce as the
// connection would, checking the signature with the key UserKey reads.
func wvUserOptionsSign(path string) error {
	opts, err := UserOptions(path)
	if err != nil {
		return err
	}
	var o nats.Options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return err
		}
	}
	nonce := []byte("aServerNonce_15")
	sig, err := o.SignatureCB(nonce)
	if err != nil {
		return err
	}
	kp, err := nkeys.FromPublicKey(o.Nkey)
	if err != nil {
		return err
	}
	return kp.Verify(nonce, sig)
}

func TestWireVectorTimeCases(t *testing.T) {
	f := wvLoad[wvApprovalFile](t, "approval.json")
	if len(f.TimeCases) == 0 {
		t.Fatal("no time cases")
	}
	unixNano := func(tt time.Time) string {
		if tt.IsZero() {
			return ""
		}
		n := new(big.Int).Mul(big.NewInt(tt.Unix()), big.NewInt(1e9))
		return n.Add(n, big.NewInt(int64(tt.Nanosecond()))).String()
	}
	for _, c := range f.TimeCases {
		t.Run(c.Name, func(t *testing.T) {
			req, err := DecodeRequest(f.Request.Subject, []byte(c.Body), wvTenant)
			if err != nil {
				t.Fatalf("DecodeRequest = %v", err)
			}
			if got := unixNano(req.RequestedAt); got != c.RequestedAtUnixNano {
				t.Errorf("requested_at %q reads as %s; want %s", c.RequestedAt, got, c.RequestedAtUnixNano)
			}
			if got := unixNano(req.Deadline); got != c.DeadlineUnixNano {
				t.Errorf("deadline %q reads as %s; want %s", c.Deadline, got, c.DeadlineUnixNano)
			}
			ns, ok := new(big.Int).SetString(c.NowUnixNano, 10)
			if !ok {
				t.Fatalf("now_unix_nano %q", c.NowUnixNano)
			}
			sec, nsec := new(big.Int).DivMod(ns, big.NewInt(1e9), new(big.Int))
			now := time.Unix(sec.Int64(), nsec.Int64())
			if want, err := time.Parse(time.RFC3339Nano, c.Now); err != nil || !now.Equal(want) {
				t.Fatalf("now_unix_nano %s is not now %s", c.NowUnixNano, c.Now)
			}
			got := wvPending
			if requestExpired(req, now) {
				got = wvExpired
			}
			if got != c.Want {
				t.Errorf("at %s the request is %s; want %s", c.Now, got, c.Want)
			}
		})
	}
}

func TestWireVectorHeaderBlocks(t *testing.T) {
	for _, b := range wvLoad[wvHeadersFile](t, "headers.json").Blocks {
		// What a nats.Msg carries as its Header; nil when the block does
		// not decode.
		h, _ := nats.DecodeHeadersMsg([]byte(b.Block))
		for _, r := range b.Reads {
			if got := h.Get(r.Name); got != r.Value {
				t.Errorf("%s: %s = %q; want %q", b.Name, r.Name, got, r.Value)
			}
		}
	}
}

func wvVerdict(err error) string {
	if err != nil {
		return wvRefused
	}
	return wvAccepted
}
