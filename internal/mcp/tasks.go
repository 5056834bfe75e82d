package mcp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentgw/agentgw/gateway/policy"
)

// Task statuses of the MCP tasks utility.
const (
	TaskWorking       = "working"
	TaskInputRequired = "input_required"
	TaskCompleted     = "completed"
	TaskFailed        = "failed"
	TaskCancelled     = "cancelled"
)

// maxTasks bounds the tasks held at once, maxTasksPerPrincipal those of
// one principal (running, or finished and kept for their TTL); past
// either a task-augmented call is refused. Without the second, one
// principal could fill the table with calls that fail at once and
// refuse every other principal's; without evicting finished tasks when
// the table is full (evictFinished), 40 principals could. A running
// task is also one of its principal's calls in flight (bounds.calls),
// as a synchronous call is, so running tasks alone cannot fill it.
const (
	maxTasks             = 10000
	maxTasksPerPrincipal = 256
)

// relatedTaskKey is the _meta key naming a result's task.
const relatedTaskKey = "io.modelcontextprotocol/related-task"

// Task is a task's state as tasks/get returns it.
type Task struct {
	TaskID        string `json:"taskId"`
	Status        string `json:"status"`
	StatusMessage string `json:"statusMessage,omitempty"`
	CreatedAt     string `json:"createdAt"`
	LastUpdatedAt string `json:"lastUpdatedAt"`
	TTL           int64  `json:"ttl"`
	PollInterval  int64  `json:"pollInterval,omitempty"`
}

// task is one task-augmented tools/call, owned by the principal that
// made it: no other principal can see, wait for or cancel it, and of its
// tokens only those whose credential may call the tool (see sees).
type task struct {
	owner  string
	tool   *Tool
	who    policy.Principal  // the Cedar principal of the credential that made it
	token  [sha256.Size]byte // the hash of the bearer token that made it
	ext    bool              // a task of the 2026-07-28 tasks extension
	cancel context.CancelFunc
	done   chan struct{}
	held   chan struct{} // closed when the call is held for approval

	mu        sync.Mutex
	sent      bool // the call may have reached the gateway: it cannot be withdrawn
	withdrawn bool // cancelled before it was sent: it never will be
	state     Task
	result    *sdk.CallToolResult
	err       error
	expires   time.Time // zero while running
}

func (t *task) snapshot() Task {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

// taskRegistry holds the endpoint's tasks and owns their goroutines.
type taskRegistry struct {
	mu    sync.Mutex
	tasks map[string]*task
	wg    sync.WaitGroup
	ctx   context.Context
	stop  context.CancelFunc
}

func newTaskRegistry() *taskRegistry {
	ctx, stop := context.WithCancel(context.Background())
	return &taskRegistry{tasks: make(map[string]*task), ctx: ctx, stop: stop}
}

// Close ends the endpoint's running tasks and waits for them. A task
// whose call was not sent yet ends cancelled (it never will be sent); one
// whose call was sent, to be decided, delivered or held for approval,
// ends failed with a no_reply error (-32012) saying the endpoint closed
// and the call may still run: the gateway has it, and nothing here can
// withdraw it, so it is never reported cancelled (see withdraw). A
// synchronous tools/call waiting for the gateway is answered -32012
// no_reply too (whileOpen; Close does not wait for the answer to be
// written: http.Server.Shutdown does), and a tools/call made after Close
// is refused, nothing sent. Close may be called more than once.
func (e *Endpoint) Close() error {
	e.tasks.mu.Lock() // no task is added (wg.Add) while Close stops them
	e.tasks.stop()
	e.tasks.mu.Unlock()
	e.tasks.wg.Wait()
	return nil
}

// withTasks serves tasks in front of the SDK handler, which has none, in
// both forms. The tasks utility of 2025-11-25: the capability in
// initialize, every tool taskSupport "optional" in tools/list, a
// tools/call carrying params.task answered with a task at once (the call
// goes on in the background; held for approval it says so in
// statusMessage), and tasks/get, tasks/result, tasks/list and
// tasks/cancel for the caller's own tasks. The tasks extension of
// 2026-07-28 (server-directed): listed in server/discover, and for a
// tools/call whose client declares it, see serverDirected. Any other
// tools/call waits for its outcome.
func (e *Endpoint) withTasks(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		// refuseReplay, before this, read the body as one strict message.
		msg, ok := r.Context().Value(rpcKey{}).(rpcMessage)
		if !ok || len(msg.ID) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		s := sessionOfInfo(auth.TokenInfoFromContext(r.Context()))
		switch msg.Method {
		case "initialize":
			e.rewrite(w, r, next, addTaskCapability)
		case "server/discover":
			e.rewrite(w, r, next, addTaskExtension)
		case "tools/list":
			e.rewrite(w, r, next, markTaskSupport)
		case "tools/call":
			// Exact member names, as the SDK reads them; readRPC refused
			// any variant of these.
			var params struct {
				Name      string         `json:"name"`
				Arguments jsontext.Value `json:"arguments"`
				Task      *struct {
					TTL *int64 `json:"ttl"`
				} `json:"task"`
			}
			if jsonv2.Unmarshal(msg.Params, &params) != nil {
				next.ServeHTTP(w, r)
				return
			}
			if params.Task == nil {
				t, ok := e.cfg.tool(params.Name)
				if !ok || s == nil || !declaresTaskExtension(msg.Params) {
					next.ServeHTTP(w, r)
					return
				}
				if !headersMatch(r, msg.Method, params.Name) {
					refusedUnsent(auth.TokenInfoFromContext(r.Context()))
					writeRPC(w, http.StatusBadRequest, msg.ID, nil, &jsonrpc.Error{Code: sdk.CodeHeaderMismatch, Message: "Mcp-Method or Mcp-Name does not match the body"})
					return
				}
				e.serverDirected(w, r, msg.ID, s, t, json.RawMessage(params.Arguments))
				return
			}
			if !headersMatch(r, msg.Method, params.Name) {
				refusedUnsent(auth.TokenInfoFromContext(r.Context()))
				writeRPC(w, http.StatusBadRequest, msg.ID, nil, &jsonrpc.Error{Code: sdk.CodeHeaderMismatch, Message: "Mcp-Method or Mcp-Name does not match the body"})
				return
			}
			t, ok := e.cfg.tool(params.Name)
			if !ok || s == nil {
				writeRPC(w, http.StatusOK, msg.ID, nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "unknown tool"})
				return
			}
			tk, err := e.startTask(s, t, json.RawMessage(params.Arguments), taskTTL(params.Task.TTL, e.ep.ApprovalWait), false)
			if err != nil {
				refusedUnsent(auth.TokenInfoFromContext(r.Context()))
				writeRPC(w, http.StatusOK, msg.ID, nil, err)
				return
			}
			writeRPC(w, http.StatusOK, msg.ID, map[string]any{"task": tk.snapshot()}, nil)
		case "tasks/get", "tasks/result", "tasks/cancel":
			var params struct {
				TaskID string `json:"taskId"`
			}
			_ = jsonv2.Unmarshal(msg.Params, &params)
			if !headersMatch(r, msg.Method, params.TaskID) {
				writeRPC(w, http.StatusBadRequest, msg.ID, nil, &jsonrpc.Error{Code: sdk.CodeHeaderMismatch, Message: "Mcp-Method or Mcp-Name does not match the body"})
				return
			}
			tk := e.ownTask(s, params.TaskID)
			if tk == nil {
				writeRPC(w, http.StatusOK, msg.ID, nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "unknown task"})
				return
			}
			if tk.ext {
				if !declaresTaskExtension(msg.Params) {
					writeRPC(w, http.StatusOK, msg.ID, nil, missingTaskExtension())
					return
				}
				e.serveExtTask(w, msg, tk)
				return
			}
			// tasks/result may wait for the task to end: who may see it
			// is asked again then (a reload may have narrowed it).
			e.serveTask(w, r, msg, tk, func() bool { return e.ownTask(s, params.TaskID) == tk })
		case "tasks/list":
			if !methodMatches(r, msg.Method) {
				writeRPC(w, http.StatusBadRequest, msg.ID, nil, &jsonrpc.Error{Code: sdk.CodeHeaderMismatch, Message: "Mcp-Method does not match the body"})
				return
			}
			list := []Task{}
			if s != nil {
				_, scopes, who := s.credential() // before tasks.mu: the two are never held together
				now := e.now()
				var own []*task
				e.tasks.mu.Lock()
				for _, tk := range e.tasks.tasks {
					if tk.owner == s.p.id {
						own = append(own, tk)
					}
				}
				e.tasks.mu.Unlock()
				for _, tk := range own { // policy decisions, outside tasks.mu
					if e.sees(s, scopes, who, tk, now) {
						list = append(list, tk.snapshot())
					}
				}
			}
			writeRPC(w, http.StatusOK, msg.ID, map[string]any{"tasks": list}, nil)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// headersMatch checks Mcp-Method and Mcp-Name against the body: both
// required from revision 2026-07-28 on, checked when present before.
func headersMatch(r *http.Request, method, name string) bool {
	n := r.Header.Get("Mcp-Name")
	if standardHeaders(r) && n == "" {
		return false
	}
	return methodMatches(r, method) && (n == "" || n == name)
}

// methodMatches checks Mcp-Method against the body, for a method that
// names nothing (Mcp-Name is not read, as the SDK does not read it):
// required from revision 2026-07-28 on, checked when present before.
func methodMatches(r *http.Request, method string) bool {
	m := r.Header.Get("Mcp-Method")
	if standardHeaders(r) && m == "" {
		return false
	}
	return m == "" || m == method
}

// standardHeaders reports whether the request's revision requires the
// standard headers (2026-07-28 on).
func standardHeaders(r *http.Request) bool {
	return r.Header.Get("MCP-Protocol-Version") >= "2026-07-28"
}

func (e *Endpoint) serveTask(w http.ResponseWriter, r *http.Request, msg rpcMessage, tk *task, stillSees func() bool) {
	switch msg.Method {
	case "tasks/get":
		writeRPC(w, http.StatusOK, msg.ID, tk.snapshot(), nil)
	case "tasks/cancel":
		switch err := tk.withdraw(); {
		case errors.Is(err, errTaskFinished):
			writeRPC(w, http.StatusOK, msg.ID, nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "task already finished"})
		case err != nil:
			writeRPC(w, http.StatusOK, msg.ID, nil, notWithdrawn(err))
		default:
			writeRPC(w, http.StatusOK, msg.ID, tk.snapshot(), nil)
		}
	case "tasks/result":
		select {
		case <-tk.done:
		case <-r.Context().Done():
			return
		}
		if !stillSees() {
			writeRPC(w, http.StatusOK, msg.ID, nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "unknown task"})
			return
		}
		tk.mu.Lock()
		res, err, st := tk.result, tk.err, tk.state
		tk.mu.Unlock()
		if err != nil {
			var rpcErr *jsonrpc.Error
			if !errors.As(err, &rpcErr) {
				rpcErr = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "task failed"}
			}
			writeRPC(w, http.StatusOK, msg.ID, nil, rpcErr)
			return
		}
		out := *res
		out.Meta = sdk.Meta{relatedTaskKey: map[string]string{"taskId": st.TaskID}}
		writeRPC(w, http.StatusOK, msg.ID, &out, nil)
	}
}

// taskTTL is the ttl of a task whose client asked for requested
// milliseconds: that, when positive and below limit, else limit. The
// comparison is in milliseconds, so no request overflows a Duration.
func taskTTL(requested *int64, limit time.Duration) time.Duration {
	if requested != nil && *requested > 0 && *requested < limit.Milliseconds() {
		return time.Duration(*requested) * time.Millisecond
	}
	return limit
}

// startTask starts a call in the background as a task of s's principal,
// made with s's credential. The task is one of the principal's calls in
// flight until its call ends; past the bound it is refused (CodeBusy),
// as a synchronous call is.
func (e *Endpoint) startTask(s *session, t *Tool, args json.RawMessage, ttl time.Duration, ext bool) (*task, *jsonrpc.Error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	now := e.now().UTC()
	stamp := now.Format(time.RFC3339Nano)
	ctx, cancel := context.WithCancel(e.tasks.ctx)
	_, _, who := s.credential() // before tasks.mu: the two are never held together
	tk := &task{owner: s.p.id, tool: t, who: who, token: s.sum, ext: ext, cancel: cancel, done: make(chan struct{}), held: make(chan struct{}), state: Task{
		TaskID: hex.EncodeToString(b[:]), Status: TaskWorking, CreatedAt: stamp, LastUpdatedAt: stamp,
		TTL: ttl.Milliseconds(), PollInterval: 500,
	}}
	e.tasks.mu.Lock()
	if e.tasks.ctx.Err() != nil {
		e.tasks.mu.Unlock()
		cancel()
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the endpoint is closing: call not sent to the gateway"}
	}
	mine := 0
	for id, old := range e.tasks.tasks {
		old.mu.Lock()
		gone := !old.expires.IsZero() && now.After(old.expires)
		old.mu.Unlock()
		switch {
		case gone:
			delete(e.tasks.tasks, id)
		case old.owner == s.p.id:
			mine++
		}
	}
	if len(e.tasks.tasks) >= maxTasks && mine < maxTasksPerPrincipal {
		e.tasks.evictFinished()
	}
	if len(e.tasks.tasks) >= maxTasks || mine >= maxTasksPerPrincipal {
		e.tasks.mu.Unlock()
		cancel()
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "too many tasks"}
	}
	if err := e.takeCall(s.p); err != nil {
		e.tasks.mu.Unlock()
		cancel()
		return nil, err
	}
	e.tasks.tasks[tk.state.TaskID] = tk
	e.tasks.wg.Add(1)
	e.tasks.mu.Unlock()
	go func() {
		defer e.tasks.wg.Done()
		defer close(tk.done)
		defer cancel()
		res, err := e.invoke(ctx, s, t, args, callHooks{sending: func() bool { return tk.send(ctx) }, held: func() {
			tk.update(TaskWorking, heldMessage, e.now())
			close(tk.held)
		}})
		e.endCall(s.p)
		tk.mu.Lock()
		defer tk.mu.Unlock()
		status := TaskCompleted
		switch {
		// ctx ends early only by withdraw (before the call was sent) or
		// by Close (at any time). A withdrawal is read from the task, not
		// from ctx: withdraw marks the task before it cancels ctx, and
		// the call may end on the mark in between.
		case err != nil && !tk.sent && (tk.withdrawn || ctx.Err() != nil):
			status, tk.state.StatusMessage = TaskCancelled, "cancelled"
		case ctx.Err() != nil && err != nil:
			err = errClosed()
			status, tk.state.StatusMessage = TaskFailed, closedMessage
		case err != nil:
			status, tk.state.StatusMessage = TaskFailed, err.Error()
		default:
			tk.state.StatusMessage = ""
		}
		tk.result, tk.err = res, err
		end := e.now().UTC()
		tk.state.Status, tk.state.LastUpdatedAt = status, end.Format(time.RFC3339Nano)
		tk.expires = end.Add(ttl)
	}()
	return tk, nil
}

// evictFinished forgets, to make room in a full table, the finished
// task that would be forgotten first (the earliest end plus TTL) among
// those of the principal holding the most tasks: a principal with room for one more is not refused because
// others keep finished tasks for their TTL. Only that principal's
// results are lost, and they were over its share of the table. Called
// with t.mu held.
func (t *taskRegistry) evictFinished() {
	// Among the principals holding a finished task: one holding only
	// running ones has nothing to give.
	held, finished := map[string]int{}, map[string]bool{}
	for _, tk := range t.tasks {
		held[tk.owner]++
		tk.mu.Lock()
		if !tk.expires.IsZero() {
			finished[tk.owner] = true
		}
		tk.mu.Unlock()
	}
	var (
		victim  string
		most    int
		oldest  string
		expires time.Time
	)
	for owner, n := range held {
		if !finished[owner] {
			continue
		}
		if n > most || (n == most && owner < victim) {
			victim, most = owner, n
		}
	}
	for id, tk := range t.tasks {
		if tk.owner != victim {
			continue
		}
		tk.mu.Lock()
		exp := tk.expires
		tk.mu.Unlock()
		if !exp.IsZero() && (oldest == "" || exp.Before(expires)) {
			oldest, expires = id, exp
		}
	}
	if oldest != "" {
		delete(t.tasks, oldest)
	}
}

var (
	errTaskFinished = errors.New("mcp: task already finished")
	errTaskSent     = errors.New("the request was sent to the gateway and cannot be withdrawn by the agent: the gateway may still deliver it to the tool; the task goes on and reports the outcome")
	errTaskHeld     = errors.New("the request is held for approval at the gateway and cannot be withdrawn by the agent: an approver may still grant it and the tool then runs; the task goes on and reports the outcome")
)

// closedMessage is the status message of a task whose call was sent
// when the endpoint closed.
const closedMessage = "the endpoint closed before a verified reply; the call may still run (the request stays at the gateway: it may still be decided and the tool run later)"

// errClosed is the error of a task whose call was sent when the
// endpoint closed: no reply, and the call may still run.
func errClosed() *jsonrpc.Error {
	data, _ := json.Marshal(DeniedData{Reason: "no_reply"})
	return &jsonrpc.Error{Code: CodeNoReply, Message: closedMessage, Data: data}
}

// send marks the call as (about to be) published and reports whether it
// may be: false once the task was withdrawn or ctx (the task's) ended.
func (t *task) send(ctx context.Context) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.withdrawn || ctx.Err() != nil {
		return false
	}
	t.sent = true
	return true
}

// withdraw cancels the task if its call was not sent, and waits for it
// to end. A call sent to the gateway is the gateway's (it may deliver
// it, at once or after an approver grants it, and nothing on the
// agent's side can withdraw it): reporting such a task cancelled would
// tell the client the tool will not run when it still may, so the
// cancel is refused (errTaskSent, errTaskHeld) and the task goes on.
// The MCP cancellation rules let a receiver refuse a request that
// cannot be cancelled. errTaskFinished: the task already ended.
func (t *task) withdraw() error {
	t.mu.Lock()
	switch {
	case t.state.Status != TaskWorking && t.state.Status != TaskInputRequired:
		t.mu.Unlock()
		return errTaskFinished
	case t.sent:
		held := t.state.StatusMessage == heldMessage
		t.mu.Unlock()
		if held {
			return errTaskHeld
		}
		return errTaskSent
	}
	t.withdrawn = true
	t.mu.Unlock()
	t.cancel()
	<-t.done
	return nil
}

// heldMessage is a task's status message while its call is held.
const heldMessage = "held for approval"

func notWithdrawn(err error) *jsonrpc.Error {
	data, _ := json.Marshal(DeniedData{Reason: "not_withdrawn"})
	return &jsonrpc.Error{Code: CodeNotWithdrawn, Message: err.Error(), Data: data}
}

func (t *task) update(status, message string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.state.Status, t.state.StatusMessage, t.state.LastUpdatedAt = status, message, now.UTC().Format(time.RFC3339Nano)
}

// ownTask returns the task id if s may see it, or nil (for another
// principal's task too, so a task id reveals nothing to anyone else).
func (e *Endpoint) ownTask(s *session, id string) *task {
	if s == nil {
		return nil
	}
	_, scopes, who := s.credential() // before tasks.mu: the two are never held together
	e.tasks.mu.Lock()
	tk := e.tasks.tasks[id]
	e.tasks.mu.Unlock()
	if tk != nil && e.sees(s, scopes, who, tk, e.now()) { // a policy decision, outside tasks.mu
		return tk
	}
	return nil
}

// sees reports whether a request made with s's token, whose credential
// holds scopes and is the Cedar principal who, may see tk at now: its
// principal made it, its ttl has not run out (it is kept no longer than
// its ttl, whenever the table is next swept), the scopes hold the tool's
// (a narrow token of the principal does not read a broad one's results),
// and who is the Cedar principal of the credential that made the task,
// every attribute a policy can read alike (samePrincipal; for the token
// that made it, whose credential a renewal by another trusted issuer may
// have changed, every one but the issuer): a token whose
// scope set or service differs sees nothing of it, since a policy could
// decide the same call otherwise for it, on the payload too, which
// visibility cannot judge. With the gateway's catalog and policies
// (e.gate), the token must also still pass what the catalog in force
// asks for the tool's target and the authorize-stage policy decision for
// who (listGate.allows, as tools/list asks it): a reload may have
// narrowed either since the task was made.
func (e *Endpoint) sees(s *session, scopes []string, who policy.Principal, tk *task, now time.Time) bool {
	tk.mu.Lock()
	gone := !tk.expires.IsZero() && now.After(tk.expires)
	tk.mu.Unlock()
	if gone || tk.owner != s.p.id || !covered(scopes, tk.tool.Scope) || !samePrincipal(who, tk.who, s.sum == tk.token) {
		return false
	}
	if e.gate == nil {
		return true
	}
	t, ok := e.gate.catalog.Load().Lookup(tk.tool.Target)
	return ok && covered(scopes, t.Scope) && who.Agent != "" && e.gate.allows(tk.tool, e.cfg.Tenant, who, now)
}

// samePrincipal reports whether a and b are the same Cedar principal:
// the same agent, tenant, service and issuer, and the same set of
// scopes; anyIssuer leaves the issuer out, for the token that made the
// task, whose credential a renewal by another trusted issuer changed.
func samePrincipal(a, b policy.Principal, anyIssuer bool) bool {
	if a.Agent == "" || a.Agent != b.Agent || a.Tenant != b.Tenant || a.Service != b.Service || (a.Issuer != b.Issuer && !anyIssuer) {
		return false
	}
	as, bs := slices.Clone(a.Scopes), slices.Clone(b.Scopes)
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(slices.Compact(as), slices.Compact(bs))
}

// rewrite runs next into a buffer and lets edit change the JSON-RPC
// result before it is written.
func (e *Endpoint) rewrite(w http.ResponseWriter, r *http.Request, next http.Handler, edit func(map[string]any)) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	var resp map[string]any
	if rec.Code == http.StatusOK && json.Unmarshal(body, &resp) == nil {
		if res, ok := resp["result"].(map[string]any); ok {
			edit(res)
			if b, err := json.Marshal(resp); err == nil {
				body = b
			}
		}
	}
	for k, v := range rec.Header() {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

func addTaskCapability(res map[string]any) {
	caps, _ := res["capabilities"].(map[string]any)
	if caps == nil {
		caps = map[string]any{}
		res["capabilities"] = caps
	}
	caps["tasks"] = map[string]any{
		"list": map[string]any{}, "cancel": map[string]any{},
		"requests": map[string]any{"tools": map[string]any{"call": map[string]any{}}},
	}
}

func markTaskSupport(res map[string]any) {
	tools, _ := res["tools"].([]any)
	for _, t := range tools {
		if m, ok := t.(map[string]any); ok {
			m["execution"] = map[string]any{"taskSupport": "optional"}
		}
	}
}

func writeRPC(w http.ResponseWriter, status int, id json.RawMessage, result any, rpcErr *jsonrpc.Error) {
	resp := map[string]any{"jsonrpc": "2.0", "id": id}
	if rpcErr != nil {
		resp["error"] = rpcErr
	} else {
		resp["result"] = result
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}

// taskExtension names the tasks extension of revision 2026-07-28.
const taskExtension = "io.modelcontextprotocol/tasks"

// declaresTaskExtension reports whether a request's per-request client
// capabilities declare the tasks extension.
func declaresTaskExtension(params json.RawMessage) bool {
	var p struct {
		Meta struct {
			Caps struct {
				Extensions map[string]jsontext.Value `json:"extensions"`
			} `json:"io.modelcontextprotocol/clientCapabilities"`
		} `json:"_meta"`
	}
	if jsonv2.Unmarshal(params, &p) != nil {
		return false
	}
	_, ok := p.Meta.Caps.Extensions[taskExtension]
	return ok
}

func missingTaskExtension() *jsonrpc.Error {
	data, _ := json.Marshal(map[string]any{"requiredCapabilities": map[string]any{"extensions": map[string]any{taskExtension: map[string]any{}}}})
	return &jsonrpc.Error{Code: sdk.CodeMissingRequiredClientCapabilities, Message: "Missing required client capability", Data: data}
}

// serverDirected serves a tools/call of a client that declared the tasks
// extension: the call starts as a task; if it finishes (allowed and
// answered, or denied) within call_timeout without being held, the
// answer is the ordinary result or error and the task is dropped; if it
// is held for approval, or still running, the answer is the task
// (resultType "task"), to be polled with tasks/get.
func (e *Endpoint) serverDirected(w http.ResponseWriter, r *http.Request, id json.RawMessage, s *session, t *Tool, args json.RawMessage) {
	tk, err := e.startTask(s, t, args, e.ep.ApprovalWait, true)
	if err != nil {
		refusedUnsent(auth.TokenInfoFromContext(r.Context()))
		writeRPC(w, http.StatusOK, id, nil, err)
		return
	}
	timer := time.NewTimer(e.ep.CallTimeout)
	defer timer.Stop()
	select {
	case <-tk.done:
		e.tasks.mu.Lock()
		delete(e.tasks.tasks, tk.state.TaskID)
		e.tasks.mu.Unlock()
		if tk.err != nil {
			rpcErr, ok := errors.AsType[*jsonrpc.Error](tk.err)
			if !ok {
				rpcErr = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "call failed"}
			}
			writeRPC(w, http.StatusOK, id, nil, rpcErr)
			return
		}
		writeRPC(w, http.StatusOK, id, completeResult(tk.result), nil)
		return
	case <-tk.held:
	case <-timer.C:
	case <-r.Context().Done():
	}
	out := extTask(tk)
	out["resultType"] = "task"
	delete(out, "result")
	delete(out, "error")
	writeRPC(w, http.StatusOK, id, out, nil)
}

// serveExtTask answers tasks/get and tasks/cancel for an extension task.
func (e *Endpoint) serveExtTask(w http.ResponseWriter, msg rpcMessage, tk *task) {
	switch msg.Method {
	case "tasks/get":
		out := extTask(tk)
		out["resultType"] = "complete"
		writeRPC(w, http.StatusOK, msg.ID, out, nil)
	case "tasks/cancel":
		// A finished task's cancel is acknowledged; one whose call the
		// gateway has is refused, as in serveTask.
		if err := tk.withdraw(); err != nil && !errors.Is(err, errTaskFinished) {
			writeRPC(w, http.StatusOK, msg.ID, nil, notWithdrawn(err))
			return
		}
		writeRPC(w, http.StatusOK, msg.ID, map[string]any{"resultType": "complete"}, nil)
	default:
		writeRPC(w, http.StatusOK, msg.ID, nil, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound, Message: "not a method of the tasks extension"})
	}
}

// extTask is a task in the extension's shape (DetailedTask): the final
// result or JSON-RPC error inline once it has one.
func extTask(tk *task) map[string]any {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	out := map[string]any{
		"taskId": tk.state.TaskID, "status": tk.state.Status,
		"createdAt": tk.state.CreatedAt, "lastUpdatedAt": tk.state.LastUpdatedAt,
		"ttlMs": tk.state.TTL, "pollIntervalMs": tk.state.PollInterval,
	}
	if tk.state.StatusMessage != "" {
		out["statusMessage"] = tk.state.StatusMessage
	}
	switch tk.state.Status {
	case TaskCompleted:
		out["result"] = completeResult(tk.result)
	case TaskFailed:
		rpcErr, ok := errors.AsType[*jsonrpc.Error](tk.err)
		if !ok {
			rpcErr = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "call failed"}
		}
		out["error"] = rpcErr
	}
	return out
}

// completeResult is a tool result with resultType "complete".
func completeResult(res *sdk.CallToolResult) map[string]any {
	var m map[string]any
	raw, _ := json.Marshal(res)
	_ = json.Unmarshal(raw, &m)
	if m == nil {
		m = map[string]any{}
	}
	m["resultType"] = "complete"
	return m
}

func addTaskExtension(res map[string]any) {
	caps, _ := res["capabilities"].(map[string]any)
	if caps == nil {
		caps = map[string]any{}
		res["capabilities"] = caps
	}
	ext, _ := caps["extensions"].(map[string]any)
	if ext == nil {
		ext = map[string]any{}
		caps["extensions"] = ext
	}
	ext[taskExtension] = map[string]any{}
}
