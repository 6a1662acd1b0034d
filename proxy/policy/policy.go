// Package policy resolves the rule that applies to a queue or channel and checks values against it:
// size, JSON, JSON Schema, envelope and delivery settings, and dedup keys. Rules come from the
// `queues:` and `channels:` lists of the config; the first rule whose glob matches wins, otherwise
// the built-in default applies. Resolved policies and compiled schemas live in bounded LRUs.
package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"gopkg.in/yaml.v3"

	"github.com/qgate/qgate/proxy/glob"
	"github.com/qgate/qgate/proxy/rdb"
)

// Rule is one entry of the `queues:` or `channels:` list.
type Rule struct {
	Match    string `yaml:"match"`     // glob on the queue or channel name
	MaxBytes int64  `yaml:"max_bytes"` // largest value accepted; 0 = only the global max_bulk_bytes
	Format   string `yaml:"format"`    // any (default) | json
	Schema   string `yaml:"schema"`    // JSON Schema file (draft 2020-12), relative to the config file
	// SchemaFormats makes the schema's "format" keywords (email, date-time, uuid, …) assertions:
	// by default they are annotations only, as draft 2020-12 specifies (README "Queue and channel rules").
	SchemaFormats bool   `yaml:"schema_formats"`
	Envelope      *bool  `yaml:"envelope"` // store values in a JSON envelope (default true)
	Deliver       string `yaml:"deliver"`  // payload (default) | envelope
	Dedup         Dedup  `yaml:"dedup"`
	// Replicas makes a push wait for that many replicas to acknowledge it (Redis WAIT) before it is
	// reported as a success; ReplicasTimeout bounds the wait (README "Replicated pushes"; queues only).
	Replicas        int           `yaml:"replicas"`
	ReplicasTimeout time.Duration `yaml:"replicas_timeout"` // default 100ms

	// Delivery and retry (README "Delivery rules" and "Retry rules"; queues only).
	Delivery          string        `yaml:"delivery"`           // at-most-once (default) | at-least-once
	Ack               string        `yaml:"ack"`                // explicit (default) | next-pop
	VisibilityTimeout time.Duration `yaml:"visibility_timeout"` // lease length (default 30s)
	MaxAttempts       *int          `yaml:"max_attempts"`       // deliveries before dead-lettering (default 5)
	Backoff           Backoff       `yaml:"backoff"`
	DeadLetter        *bool         `yaml:"dead_letter"` // keep items past max_attempts in the dead list (default true); false drops them
	// GlobalFIFO serves the queue's blocked pops in the order they started to wait across every qgate
	// instance, not per instance (README "Delivery rules", "Blocked pops across instances").
	GlobalFIFO bool `yaml:"global_fifo"`

	// Queue controls (README "Queue controls"; queues only).
	MaxLength int64         `yaml:"max_length"` // most items waiting (ready + delayed); 0 = unbounded
	Overflow  string        `yaml:"overflow"`   // reject (default with max_length) | drop-oldest
	Delay     time.Duration `yaml:"delay"`      // RPUSH/LPUSH items become visible after it; 0 = at once
}

// Backoff is the delay before a failed item is ready again: initial × multiplier^(attempts-1),
// capped at max, then spread by ±jitter (a fraction).
type Backoff struct {
	Initial    time.Duration `yaml:"initial"`    // default 1s
	Max        time.Duration `yaml:"max"`        // default 5m
	Multiplier *float64      `yaml:"multiplier"` // default 2
	Jitter     *float64      `yaml:"jitter"`     // default 0.2
}

// Delivery defaults.
const (
	DefaultVisibilityTimeout = 30 * time.Second
	DefaultMaxAttempts       = 5
	DefaultBackoffInitial    = time.Second
	DefaultBackoffMax        = 5 * time.Minute
	DefaultBackoffMultiplier = 2.0
	DefaultBackoffJitter     = 0.2
)

// Dedup configures duplicate suppression: `dedup: body`, `dedup: /order_id`, or
// `dedup: {key: /order_id, window: 10m}`.
type Dedup struct {
	Key    string        `yaml:"key"`    // off (default) | body | a JSON pointer into the payload
	Window time.Duration `yaml:"window"` // how long a key is remembered (default 5m)
}

// DefaultDedupWindow is the dedup window when a rule sets none.
const DefaultDedupWindow = 5 * time.Minute

// UnmarshalYAML accepts the scalar short form as well as the mapping.
func (d *Dedup) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		d.Key = n.Value
		return nil
	}
	type plain Dedup
	return n.Decode((*plain)(d))
}

// Policy is a resolved rule, ready to check values.
type Policy struct {
	Kind            string // "queues" or "channels"
	Index           int    // position in the list; -1 for the built-in default
	Match           string
	MaxBytes        int64
	JSON            bool
	Schema          *jsonschema.Schema
	SchemaName      string // the schema file's base name, for messages
	Envelope        bool
	DeliverEnvelope bool
	DedupBody       bool
	DedupPointer    string // JSON pointer, when deduplicating by a member of the payload
	DedupWindow     time.Duration
	Replicas        int           // replicas that must acknowledge a push (0: none, no WAIT)
	ReplicasTimeout time.Duration // set when Replicas > 0

	AtLeastOnce       bool          // delivery: at-least-once (pops lease items)
	AckNextPop        bool          // ack: next-pop
	VisibilityTimeout time.Duration // always set (the default when the rule has none)
	MaxAttempts       int
	BackoffInitial    time.Duration
	BackoffMax        time.Duration
	BackoffMultiplier float64
	BackoffJitter     float64
	DeadLetter        bool
	GlobalFIFO        bool // blocked pops ordered across instances (rdb.FIFOTurn)

	MaxLength  int64         // 0: unbounded
	DropOldest bool          // overflow: drop-oldest (else reject)
	Delay      time.Duration // pushes become visible after it
}

// Controlled reports whether pushes to the queue go through rdb.ControlPush (max_length or a delay).
func (p *Policy) Controlled() bool { return p.MaxLength > 0 || p.Delay > 0 }

// setDeliveryDefaults fills the delivery fields of a policy with the defaults.
func (p *Policy) setDeliveryDefaults() {
	p.VisibilityTimeout, p.MaxAttempts, p.DeadLetter = DefaultVisibilityTimeout, DefaultMaxAttempts, true
	p.BackoffInitial, p.BackoffMax = DefaultBackoffInitial, DefaultBackoffMax
	p.BackoffMultiplier, p.BackoffJitter = DefaultBackoffMultiplier, DefaultBackoffJitter
}

// Name identifies the rule in error messages: queues[0] "email_*", or "default queue rule".
func (p *Policy) Name() string {
	if p.Index < 0 {
		return "default " + strings.TrimSuffix(p.Kind, "s") + " rule"
	}
	return fmt.Sprintf("%s[%d] %q", p.Kind, p.Index, p.Match)
}

// Dedup reports whether the rule suppresses duplicates.
func (p *Policy) Dedup() bool { return p.DedupBody || p.DedupPointer != "" }

// Set holds the compiled rules for queues and channels.
type Set struct {
	queues, channels []*Policy
	defQueue, defCh  *Policy
	cache            *lru.Cache[string, *Policy] // "q:name" / "c:name" → policy
}

// cacheSize bounds the resolved-policy cache: arbitrary names cannot grow memory.
const cacheSize = 8192

var schemaCache, _ = lru.New[string, *jsonschema.Schema](256)

// NewSet compiles rules (schemas included). Relative schema paths are resolved against baseDir.
// The error lists every problem, each prefixed with its path (queues[1].schema: …).
func NewSet(queues, channels []Rule, baseDir string) (*Set, error) {
	s := &Set{
		defQueue: &Policy{Kind: "queues", Index: -1, Match: "*", Envelope: true},
		defCh:    &Policy{Kind: "channels", Index: -1, Match: "*", Envelope: true},
	}
	s.defQueue.setDeliveryDefaults()
	s.defCh.setDeliveryDefaults()
	s.cache, _ = lru.New[string, *Policy](cacheSize)
	var errs []error
	for _, list := range []struct {
		kind  string
		rules []Rule
		dst   *[]*Policy
	}{{"queues", queues, &s.queues}, {"channels", channels, &s.channels}} {
		for i, r := range list.rules {
			p, err := compile(list.kind, i, r, baseDir)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			*list.dst = append(*list.dst, p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func compile(kind string, i int, r Rule, baseDir string) (*Policy, error) {
	path := fmt.Sprintf("%s[%d]", kind, i)
	p := &Policy{Kind: kind, Index: i, Match: r.Match, MaxBytes: r.MaxBytes, Envelope: r.Envelope == nil || *r.Envelope}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	if r.Match == "" {
		bad("match", "required (a glob such as \"email_*\")")
	}
	if r.MaxBytes < 0 {
		bad("max_bytes", "must be >= 0, got %d", r.MaxBytes)
	}
	switch r.Format {
	case "", "any":
	case "json":
		p.JSON = true
	default:
		bad("format", "must be any or json, got %q", r.Format)
	}
	switch r.Deliver {
	case "", "payload":
	case "envelope":
		p.DeliverEnvelope = true
	default:
		bad("deliver", "must be payload or envelope, got %q", r.Deliver)
	}
	switch k := r.Dedup.Key; {
	case k == "" || k == "off":
	case k == "body":
		p.DedupBody = true
	case strings.HasPrefix(k, "/"):
		p.DedupPointer = k
	default:
		bad("dedup.key", "must be off, body or a JSON pointer such as /order_id, got %q", k)
	}
	p.DedupWindow = r.Dedup.Window
	if p.Dedup() && p.DedupWindow == 0 {
		p.DedupWindow = DefaultDedupWindow
	}
	if r.Dedup.Window < 0 {
		bad("dedup.window", "must be > 0, got %s", r.Dedup.Window)
	}
	if r.Schema != "" {
		file := r.Schema
		if !filepath.IsAbs(file) && baseDir != "" {
			file = filepath.Join(baseDir, file)
		}
		sch, err := loadSchema(file, r.SchemaFormats)
		if err != nil {
			bad("schema", "%v", err)
		}
		p.Schema, p.SchemaName, p.JSON = sch, filepath.Base(r.Schema), true
	}
	if r.SchemaFormats && r.Schema == "" {
		bad("schema_formats", "needs a schema")
	}
	if p.DedupPointer != "" && !p.JSON {
		bad("dedup.key", "a JSON pointer needs format: json or a schema")
	}
	compileDelivery(p, r, bad)
	compileControls(p, r, bad)
	compileReplicas(p, kind, r, bad)
	if r.GlobalFIFO && kind != "queues" {
		bad("global_fifo", "applies to queues only")
	}
	p.GlobalFIFO = r.GlobalFIFO
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// DefaultReplicasTimeout is the WAIT timeout of a rule with replicas: and no replicas_timeout.
const DefaultReplicasTimeout = 100 * time.Millisecond

// maxReplicasTimeout bounds replicas_timeout: the wait holds the client's whole batch.
const maxReplicasTimeout = 10 * time.Second

// compileReplicas checks and resolves replicas and replicas_timeout (README "Replicated pushes").
func compileReplicas(p *Policy, kind string, r Rule, bad func(field, format string, args ...any)) {
	if r.Replicas < 0 {
		bad("replicas", "must be >= 0, got %d", r.Replicas)
		return
	}
	if r.Replicas > 0 && kind != "queues" {
		bad("replicas", "applies to queues only (a published message is not stored)")
		return
	}
	switch t := r.ReplicasTimeout; {
	case t < 0:
		bad("replicas_timeout", "must be > 0, got %s", t)
		return
	case t > maxReplicasTimeout:
		bad("replicas_timeout", "must be at most %s, got %s", maxReplicasTimeout, t)
		return
	case t > 0 && t < time.Millisecond:
		bad("replicas_timeout", "must be at least 1ms (Redis WAIT counts milliseconds), got %s", t)
		return
	case t != 0 && r.Replicas == 0:
		bad("replicas_timeout", "needs replicas: N")
		return
	}
	p.Replicas = r.Replicas
	if p.Replicas > 0 {
		p.ReplicasTimeout = r.ReplicasTimeout
		if p.ReplicasTimeout == 0 {
			p.ReplicasTimeout = DefaultReplicasTimeout
		}
	}
}

// compileDelivery checks and resolves the delivery and retry fields.
func compileDelivery(p *Policy, r Rule, bad func(field, format string, args ...any)) {
	p.setDeliveryDefaults()
	switch r.Delivery {
	case "", "at-most-once":
	case "at-least-once":
		p.AtLeastOnce = true
	default:
		bad("delivery", "must be at-most-once or at-least-once, got %q", r.Delivery)
	}
	switch r.Ack {
	case "", "explicit":
	case "next-pop":
		p.AckNextPop = true
	default:
		bad("ack", "must be explicit or next-pop, got %q", r.Ack)
	}
	if p.Kind == "channels" && (p.AtLeastOnce || r.Ack != "" || r.VisibilityTimeout != 0 || r.MaxAttempts != nil ||
		r.DeadLetter != nil || r.Backoff != (Backoff{})) {
		bad("delivery", "delivery settings apply to queues only")
	}
	switch d := r.VisibilityTimeout; {
	case d == 0:
	case d < time.Millisecond:
		bad("visibility_timeout", "must be at least 1ms, got %s", d)
	default:
		p.VisibilityTimeout = d
	}
	if r.MaxAttempts != nil {
		if *r.MaxAttempts < 1 {
			bad("max_attempts", "must be >= 1, got %d", *r.MaxAttempts)
		}
		p.MaxAttempts = *r.MaxAttempts
	}
	if r.DeadLetter != nil {
		p.DeadLetter = *r.DeadLetter
	}
	b := r.Backoff
	if b.Initial < 0 {
		bad("backoff.initial", "must be >= 0, got %s", b.Initial)
	} else if b.Initial > 0 {
		p.BackoffInitial = b.Initial
	}
	if b.Max < 0 {
		bad("backoff.max", "must be >= 0, got %s", b.Max)
	} else if b.Max > 0 {
		p.BackoffMax = b.Max
	}
	if p.BackoffMax < p.BackoffInitial {
		bad("backoff.max", "must be >= backoff.initial (%s), got %s", p.BackoffInitial, p.BackoffMax)
	}
	if b.Multiplier != nil {
		if *b.Multiplier < 1 || *b.Multiplier > 100 {
			bad("backoff.multiplier", "must be between 1 and 100, got %g", *b.Multiplier)
		}
		p.BackoffMultiplier = *b.Multiplier
	}
	if b.Jitter != nil {
		if *b.Jitter < 0 || *b.Jitter > 1 {
			bad("backoff.jitter", "must be between 0 and 1, got %g", *b.Jitter)
		}
		p.BackoffJitter = *b.Jitter
	}
}

// MaxDelay bounds a rule's delay (and QPUSH's): a year, far beyond any job queue's need, and well
// inside the ZSET scores' exact integer range.
const MaxDelay = 365 * 24 * time.Hour

// compileControls checks and resolves max_length, overflow and delay (README "Queue controls").
func compileControls(p *Policy, r Rule, bad func(field, format string, args ...any)) {
	if p.Kind == "channels" && (r.MaxLength != 0 || r.Overflow != "" || r.Delay != 0) {
		bad("max_length", "max_length, overflow and delay apply to queues only")
		return
	}
	if r.MaxLength < 0 {
		bad("max_length", "must be >= 0, got %d", r.MaxLength)
	}
	p.MaxLength = max(r.MaxLength, 0)
	switch r.Overflow {
	case "", "reject":
	case "drop-oldest":
		p.DropOldest = true
	default:
		bad("overflow", "must be reject or drop-oldest, got %q", r.Overflow)
	}
	if r.Overflow != "" && r.MaxLength == 0 {
		bad("overflow", "needs max_length")
	}
	switch d := r.Delay; {
	case d < 0:
		bad("delay", "must be >= 0, got %s", d)
	case d > MaxDelay:
		bad("delay", "must be at most %s, got %s", MaxDelay, d)
	case d > 0 && d < time.Millisecond:
		bad("delay", "must be at least 1ms, got %s", d)
	default:
		p.Delay = d
	}
}

// Warnings lists rules, or settings of rules, that are valid but do nothing (README "Queue and
// channel rules"): retry settings on a queue that is not at-least-once, deliver: envelope with
// envelope: false, and rules no name can reach because an earlier rule matches every name they
// match. That last check is deliberately partial: an earlier pattern covers a later one when they
// are identical, when it is "*", when the later one is a plain name it matches, or when it is a
// literal prefix followed by a single "*" and the later one's literal prefix starts with it
// ("email_*" covers "email_urgent_*"). Other overlaps (e.g. "a?c" and "a[bc]c") are not detected.
func Warnings(queues, channels []Rule) []string {
	var out []string
	for _, list := range []struct {
		kind  string
		rules []Rule
	}{{"queues", queues}, {"channels", channels}} {
		for j, r := range list.rules {
			name := fmt.Sprintf("%s[%d] %q", list.kind, j, r.Match)
			if list.kind == "queues" && (r.Delivery == "" || r.Delivery == "at-most-once") {
				var unused []string
				if r.Ack != "" {
					unused = append(unused, "ack")
				}
				if r.VisibilityTimeout != 0 {
					unused = append(unused, "visibility_timeout")
				}
				if r.MaxAttempts != nil {
					unused = append(unused, "max_attempts")
				}
				if r.Backoff != (Backoff{}) {
					unused = append(unused, "backoff")
				}
				if r.DeadLetter != nil {
					unused = append(unused, "dead_letter")
				}
				if len(unused) > 0 {
					out = append(out, fmt.Sprintf("%s: %s %s nothing without delivery: at-least-once",
						name, strings.Join(unused, ", "), map[bool]string{true: "does", false: "do"}[len(unused) == 1]))
				}
			}
			if r.Deliver == "envelope" && r.Envelope != nil && !*r.Envelope {
				out = append(out, fmt.Sprintf("%s: deliver: envelope does nothing with envelope: false (items are stored without an envelope, so consumers get the payload)", name))
			}
			if r.Match == "" {
				continue
			}
			for i, earlier := range list.rules[:j] {
				if covers(earlier.Match, r.Match) {
					out = append(out, fmt.Sprintf("%s: never applies: %s[%d] %q comes first and matches every name it matches", name, list.kind, i, earlier.Match))
					break
				}
			}
		}
	}
	return out
}

// covers reports whether pattern a matches every name pattern b matches, in the cases Warnings lists.
func covers(a, b string) bool {
	if a == "" {
		return false
	}
	if a == b || a == "*" {
		return true
	}
	bPrefix, bRest := glob.LiteralPrefix(b)
	if bRest == "" {
		return glob.Match(a, bPrefix) // b is one name
	}
	aPrefix, aRest := glob.LiteralPrefix(a)
	return aRest == "*" && strings.HasPrefix(bPrefix, aPrefix)
}

// loadSchema compiles a JSON Schema file (draft 2020-12 unless it says otherwise), cached by path,
// modification time and whether "format" is asserted (formats).
func loadSchema(file string, formats bool) (*jsonschema.Schema, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("read schema: %w", err)
	}
	key := abs + "@" + strconv.FormatInt(st.ModTime().UnixNano(), 10) + "@" + strconv.FormatBool(formats)
	if sch, ok := schemaCache.Get(key); ok {
		return sch, nil
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if formats {
		c.AssertFormat()
	}
	sch, err := c.Compile(abs)
	if err != nil {
		return nil, fmt.Errorf("compile schema %s: %w", filepath.Base(file), err)
	}
	schemaCache.Add(key, sch)
	return sch, nil
}

// MinVisibility returns the shortest visibility timeout of the queue rules (the default's included).
func (s *Set) MinVisibility() time.Duration {
	d := s.defQueue.VisibilityTimeout
	for _, p := range s.queues {
		if p.AtLeastOnce && p.VisibilityTimeout < d {
			d = p.VisibilityTimeout
		}
	}
	return d
}

// Queue returns the policy for a queue name.
func (s *Set) Queue(name string) *Policy { return s.resolve("q:", name, s.queues, s.defQueue) }

// Channel returns the policy for a channel name.
func (s *Set) Channel(name string) *Policy { return s.resolve("c:", name, s.channels, s.defCh) }

func (s *Set) resolve(prefix, name string, rules []*Policy, def *Policy) *Policy {
	if len(rules) == 0 {
		return def
	}
	key := prefix + name
	if p, ok := s.cache.Get(key); ok {
		return p
	}
	p := def
	for _, r := range rules {
		if glob.Match(r.Match, name) {
			p = r
			break
		}
	}
	s.cache.Add(key, p)
	return p
}

// Check validates one value: size, then JSON, then schema. The error says why, without the rule.
func (p *Policy) Check(value []byte) error {
	if p.MaxBytes > 0 && int64(len(value)) > p.MaxBytes {
		return fmt.Errorf("value is %d bytes, %s limit %d", len(value), strings.TrimSuffix(p.Kind, "s"), p.MaxBytes)
	}
	if !p.JSON {
		return nil
	}
	v, err := decodeJSON(value)
	if err != nil {
		return err
	}
	if p.Schema != nil {
		if err := p.Schema.Validate(v); err != nil {
			return fmt.Errorf("schema %s: %s", p.SchemaName, schemaReason(err))
		}
	}
	return nil
}

// decodeJSON parses exactly one JSON value, reporting the byte offset of a syntax error.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	if err == nil {
		off := int(dec.InputOffset())
		for off < len(b) && isSpace(b[off]) {
			off++
		}
		if off < len(b) {
			return nil, fmt.Errorf("not JSON at offset %d: data after the value", off)
		}
		return v, nil
	}
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		// Offset counts the offending byte; report its 0-based position.
		return nil, fmt.Errorf("not JSON at offset %d: %s", max(se.Offset-1, 0), se.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("not JSON at offset %d: unexpected end of input", len(b))
	default:
		return nil, fmt.Errorf("not JSON: %v", err)
	}
}

var printer = message.NewPrinter(language.English)

// schemaReason reduces a validation error to its first leaf: "/receiver: missing property".
func schemaReason(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	loc := "/" + strings.Join(ve.InstanceLocation, "/")
	if r, ok := ve.ErrorKind.(*kind.Required); ok && len(r.Missing) > 0 {
		return strings.TrimSuffix(loc, "/") + "/" + r.Missing[0] + ": missing property"
	}
	return loc + ": " + ve.ErrorKind.LocalizedString(printer)
}

// DedupKey returns the string that identifies a value for duplicate suppression: a SHA-256 of the
// body, or of the JSON value at the rule's pointer.
func (p *Policy) DedupKey(value []byte) (string, error) {
	if p.DedupBody {
		sum := sha256.Sum256(value)
		return hex.EncodeToString(sum[:16]), nil
	}
	v, err := decodeJSON(value)
	if err != nil {
		return "", err
	}
	at, ok := pointer(v, p.DedupPointer)
	if !ok {
		return "", fmt.Errorf("dedup key %s: missing", p.DedupPointer)
	}
	canon, _ := json.Marshal(at)
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:16]), nil
}

// pointer resolves an RFC 6901 JSON pointer.
func pointer(v any, ptr string) (any, bool) {
	if ptr == "" {
		return v, true
	}
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// MaxNameLen bounds queue and channel names.
const MaxNameLen = 200

// ValidateName checks a queue or channel name (kind is "queue" or "channel"): 1 to 200 printable
// ASCII characters without spaces, quotes, backslashes or glob characters, and braces only as
// rdb.CheckName allows them (a name may carry its own Redis Cluster {hash tag}, which every key
// derived from it then shares: README "Queue names"). Patterns (PSUBSCRIBE) may use glob characters,
// and braces freely (they are literal characters in a Redis glob).
func ValidateName(kind, name string, pattern bool) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return fmt.Errorf("invalid %s name: use 1 to %d characters", kind, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c > ' ' && c < 0x7f && !strings.ContainsRune(`"'\`, rune(c))
		if !pattern && strings.ContainsRune("*?[]", rune(c)) {
			ok = false
		}
		if !ok {
			return fmt.Errorf("invalid %s name %q: use printable ASCII without spaces, quotes, backslashes or * ? [ ]", kind, clip(name))
		}
	}
	if !pattern {
		if err := rdb.CheckName(name); err != nil {
			return fmt.Errorf("invalid %s name %q: %w", kind, clip(name), err)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
