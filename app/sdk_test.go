package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sdkcheckDir holds check.mjs and the pinned SDKs; `make test` runs npm ci
// there.
var sdkcheckDir = filepath.Join("..", "deployments", "sdkcheck")

// sdkReport is the JSON line check.mjs prints.
type sdkReport struct {
	Node   string `json:"node"`
	OpenAI struct {
		Version   string  `json:"version"`
		Stream    sdkCall `json:"stream"`
		Create    sdkCall `json:"create"`
		Responses sdkCall `json:"responses"` // client.responses.create({stream: true})
	} `json:"openai"`
	Anthropic struct {
		Version string  `json:"version"`
		Stream  sdkCall `json:"stream"`
		Helper  sdkCall `json:"helper"`
	} `json:"anthropic"`
}

// sdkCall is what one SDK call handed back; fields a call does not produce
// stay zero.
type sdkCall struct {
	Status        int       `json:"status"`
	RequestID     string    `json:"request_id"`
	ContentType   string    `json:"content_type"`
	Text          string    `json:"text"`
	FinalText     string    `json:"final_text"`
	Chunks        int       `json:"chunks"`
	ContentChunks int       `json:"content_chunks"`
	Events        int       `json:"events"`
	TextDeltas    int       `json:"text_deltas"`
	Types         []string  `json:"types"`
	FinishReason  string    `json:"finish_reason"`
	StopReason    string    `json:"stop_reason"`
	Usage         *sdkUsage `json:"usage"`
	Error         *sdkError `json:"error"`
}

// sdkUsage holds both providers' usage fields; nil means absent.
type sdkUsage struct {
	PromptTokens     *int64 `json:"prompt_tokens"`
	CompletionTokens *int64 `json:"completion_tokens"`
	InputTokens      *int64 `json:"input_tokens"`
	OutputTokens     *int64 `json:"output_tokens"`
}

type sdkError struct {
	Name    string `json:"name"`
	Status  *int   `json:"status"`
	Message string `json:"message"`
	Cause   string `json:"cause"`
}

// TestOfficialSDKs streams through the relay with the official openai and
// @anthropic-ai/sdk npm packages (deployments/sdkcheck) and checks that each
// SDK gets the mock's tokens and usage, and that the relay recorded the
// calls.
func TestOfficialSDKs(t *testing.T) {
	node := requireSDKs(t)
	r := startRelayWith(t, "", func(c *Config) {
		// A Responses route: the openai route's settings on /v1/responses.
		rc := c.Routes[0]
		rc.Name, rc.Path = "responses", "/v1/responses"
		c.Routes = append(c.Routes, rc)
	})
	const chunks = 7
	want := mockTokens(chunks)

	rep := runSDKCheck(t, node, r.base, chunks)
	t.Logf("node %s, openai %s, @anthropic-ai/sdk %s", rep.Node, rep.OpenAI.Version, rep.Anthropic.Version)
	pins := sdkPins(t)
	if rep.OpenAI.Version != pins["openai"] || rep.Anthropic.Version != pins["@anthropic-ai/sdk"] {
		t.Fatalf("node_modules holds openai %s, @anthropic-ai/sdk %s; package.json pins %v: run npm ci in %s",
			rep.OpenAI.Version, rep.Anthropic.Version, pins, sdkcheckDir)
	}

	n := int64(chunks)
	tests := []struct {
		name     string
		call     sdkCall
		route    string
		query    string // check.mjs tags each call's URL with sdkcheck=<query>
		agent    string // User-Agent prefix
		text     string // what the SDK assembled
		usage    *int64 // output tokens the SDK reported
		deltas   int    // content deltas the SDK yielded; -1: not counted
		streamed bool   // the relay saw SSE and so records tokens_out
	}{
		{
			name: "openai stream", call: rep.OpenAI.Stream, route: "openai", query: "openai-stream",
			agent: "OpenAI/JS " + rep.OpenAI.Version, text: rep.OpenAI.Stream.Text,
			usage:  usageOf(rep.OpenAI.Stream.Usage, func(u *sdkUsage) *int64 { return u.CompletionTokens }),
			deltas: rep.OpenAI.Stream.ContentChunks, streamed: true,
		},
		{
			name: "openai create", call: rep.OpenAI.Create, route: "openai", query: "openai-create",
			agent: "OpenAI/JS " + rep.OpenAI.Version, text: rep.OpenAI.Create.Text,
			usage:  usageOf(rep.OpenAI.Create.Usage, func(u *sdkUsage) *int64 { return u.CompletionTokens }),
			deltas: -1,
		},
		{
			name: "openai responses", call: rep.OpenAI.Responses, route: "responses", query: "openai-responses",
			agent: "OpenAI/JS " + rep.OpenAI.Version, text: rep.OpenAI.Responses.Text,
			usage:  usageOf(rep.OpenAI.Responses.Usage, func(u *sdkUsage) *int64 { return u.OutputTokens }),
			deltas: rep.OpenAI.Responses.TextDeltas, streamed: true,
		},
		{
			name: "anthropic stream", call: rep.Anthropic.Stream, route: "anthropic", query: "anthropic-stream",
			agent: "Anthropic/JS " + rep.Anthropic.Version, text: rep.Anthropic.Stream.Text,
			usage:  usageOf(rep.Anthropic.Stream.Usage, func(u *sdkUsage) *int64 { return u.OutputTokens }),
			deltas: rep.Anthropic.Stream.TextDeltas, streamed: true,
		},
		{
			name: "anthropic helper", call: rep.Anthropic.Helper, route: "anthropic", query: "anthropic-helper",
			agent: "Anthropic/JS " + rep.Anthropic.Version, text: rep.Anthropic.Helper.FinalText,
			usage:  usageOf(rep.Anthropic.Helper.Usage, func(u *sdkUsage) *int64 { return u.OutputTokens }),
			deltas: -1, streamed: true,
		},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			c := tt.call
			if c.Error != nil {
				t.Fatalf("the SDK failed: %+v (partial result: status %d, text %q)", *c.Error, c.Status, c.Text)
			}
			if c.Status != 200 {
				t.Errorf("status %d, want 200", c.Status)
			}
			if tt.text != want {
				t.Errorf("text %q, want %q", tt.text, want)
			}
			if tt.deltas >= 0 && tt.deltas != chunks {
				t.Errorf("%d content deltas, want %d", tt.deltas, chunks)
			}
			if tt.usage == nil || *tt.usage != n {
				t.Errorf("output usage %s, want %d (usage: %s)", ptrString(tt.usage), n, jsonString(c.Usage))
			}

			if c.RequestID == "" {
				t.Fatal("the response has no X-Request-Id")
			}
			row := r.rows.wait(t, c.RequestID)
			if row.Status != 200 || row.Route != tt.route || row.ErrorType != "" {
				t.Errorf("record: status %d, route %q, error %q; want 200, %q, none", row.Status, row.Route, row.ErrorType, tt.route)
			}
			var hdr map[string]string
			if err := json.Unmarshal([]byte(row.ReqHeaders), &hdr); err != nil {
				t.Fatalf("record request headers %q: %v", row.ReqHeaders, err)
			}
			if !strings.HasPrefix(hdr["user-agent"], tt.agent) {
				t.Errorf("recorded user-agent %q, want %q...", hdr["user-agent"], tt.agent)
			}
			if tt.streamed && row.TokensOut != n {
				t.Errorf("recorded tokens_out %d, want %d", row.TokensOut, n)
			}
			if tt.streamed && (row.TTFT < 0 || row.TTFT > row.Duration) {
				t.Errorf("recorded ttft %v (duration %v)", row.TTFT, row.Duration)
			}

			up := upstreamRequest(t, r, "sdkcheck="+tt.query)
			if up == nil {
				return
			}
			if got := up.Get("User-Agent"); got != hdr["user-agent"] {
				t.Errorf("upstream got User-Agent %q, the SDK sent %q", got, hdr["user-agent"])
			}
			for k, vs := range up {
				for _, v := range vs {
					if strings.Contains(v, relayKey) {
						t.Errorf("upstream got the relay key in %s", k)
					}
				}
			}
			if tt.route == "anthropic" && up.Get("Anthropic-Version") != hdr["anthropic-version"] {
				t.Errorf("upstream got anthropic-version %q, the SDK sent %q",
					up.Get("Anthropic-Version"), hdr["anthropic-version"])
			}
		})
	}
}

// requireSDKs returns the node binary, or skips (fails under CI) when node
// or the installed SDKs are missing.
func requireSDKs(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		msg := "SDK CHECK NOT RUN: " + why + "; the relay is NOT being tested against the official OpenAI and Anthropic SDKs. " +
			"Install Node 20+ and run `make test` (or `npm ci` in deployments/sdkcheck)."
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH")
	}
	for _, pkg := range []string{"openai", "@anthropic-ai/sdk"} {
		if _, err := os.Stat(filepath.Join(sdkcheckDir, "node_modules", pkg, "package.json")); err != nil {
			missing(pkg + " is not installed in " + sdkcheckDir + "/node_modules")
		}
	}
	return node
}

// runSDKCheck runs check.mjs against the relay at base and parses its report.
func runSDKCheck(t *testing.T, node, base string, chunks int) *sdkReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs")
	cmd.Dir = sdkcheckDir
	// A clean environment: OPENAI_* and ANTHROPIC_* variables of the
	// developer's shell would change what the SDKs send.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"RELAY_BASE_URL=" + base + "/v1",
		"RELAY_KEY=" + relayKey,
		"MOCK_CHUNKS=" + strconv.Itoa(chunks),
	}
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("check.mjs did not finish in 60s; stdout %q, stderr %q", out, stderr.String())
	}
	if err != nil {
		t.Fatalf("check.mjs: %v; stdout %q, stderr %q", err, out, stderr.String())
	}
	line := bytes.TrimSpace(out)
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	var rep sdkReport
	if err := json.Unmarshal(line, &rep); err != nil {
		t.Fatalf("check.mjs output %q: %v; stderr %q", out, err, stderr.String())
	}
	t.Logf("check.mjs: %s", line)
	return &rep
}

// sdkPins returns the exact versions package.json pins.
func sdkPins(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sdkcheckDir, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatalf("package.json: %v", err)
	}
	return pkg.Dependencies
}

// upstreamRequest returns the request the mock upstream received whose URL
// carries query, or reports that none did.
func upstreamRequest(t *testing.T, r *relay, query string) http.Header {
	t.Helper()
	var paths []string
	for _, req := range r.mock.Requests() {
		if strings.Contains(req.Path, query) {
			return req.Header
		}
		paths = append(paths, req.Path)
	}
	t.Errorf("no upstream request carries %q, so the query string was lost; upstream paths: %q", query, paths)
	return nil
}

// mockTokens is the text the mock streams in n chunks: "tok0 tok1 ... ".
func mockTokens(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("tok" + strconv.Itoa(i) + " ")
	}
	return b.String()
}

func usageOf(u *sdkUsage, f func(*sdkUsage) *int64) *int64 {
	if u == nil {
		return nil
	}
	return f(u)
}

func ptrString(p *int64) string {
	if p == nil {
		return "absent"
	}
	return strconv.FormatInt(*p, 10)
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
