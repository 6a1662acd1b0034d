package commands

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Per-command and error counters of one server (INFO commandstats and errorstats, README "Operations";
// qgate_commands_total reads them too, so the RESP and HTTP views never disagree). A connection gets
// the spec of each command from Exec and adds to that spec's CmdStat: an index, no map and no lock
// on the hot path. Error replies take a lock (errorstats), as they are the exception.

// CmdStat are one command's counters, with Redis 7's meanings: Calls and Usec count commands that
// ran, Rejected those refused before running (arity, NOAUTH, NOPERM, subscribed context), Failed
// those that ran and answered an error.
type CmdStat struct {
	Calls, Usec, Rejected, Failed atomic.Int64

	unknownSub atomic.Int64 // unknown subcommands of a container (not in commandstats, as in Redis)
}

// maxErrorCodes bounds the error codes errorstats tracks (Redis's ERROR_STATS_NUMBER): backend errors
// pass through verbatim, so their codes are not qgate's to bound.
const maxErrorCodes = 128

// CommandStats are a server's command and error counters.
type CommandStats struct {
	cmds    []CmdStat    // by Spec.index
	unknown atomic.Int64 // unknown commands and subcommands
	errors  atomic.Int64 // total_error_replies

	mu    sync.Mutex
	codes map[string]int64 // errorstat_<code>
}

// Index is the spec's position among every command and subcommand (Specs).
func (s *Spec) Index() int { return s.index }

// Specs returns every command and subcommand spec, each at its Index.
func Specs() []*Spec { return specList }

// NewCommandStats returns zeroed counters for every command in the table.
func NewCommandStats() *CommandStats {
	return &CommandStats{cmds: make([]CmdStat, len(specList)), codes: map[string]int64{}}
}

// Record counts one command: spec and out as Exec returned them, usec its time, reply the start of
// its reply (to tell an error reply, whose code errorstats counts).
func (cs *CommandStats) Record(spec *Spec, out Outcome, usec int64, reply []byte) {
	failed := len(reply) > 0 && (reply[0] == '-' || reply[0] == '!')
	if failed {
		cs.noteError(reply)
	}
	if spec == nil {
		cs.unknown.Add(1)
		return
	}
	st := &cs.cmds[spec.index]
	switch {
	case out == Unknown:
		st.unknownSub.Add(1)
		return
	case out == Rejected:
		st.Rejected.Add(1)
		return
	case failed:
		st.Failed.Add(1)
	}
	st.Calls.Add(1)
	st.Usec.Add(usec)
}

// noteError counts an error reply under its code (the first word, as Redis's afterErrorReply: "ERR"
// when it has none within 32 bytes).
func (cs *CommandStats) noteError(reply []byte) {
	cs.errors.Add(1)
	msg := reply[1:]
	if reply[0] == '!' { // RESP3 blob error: !<len>\r\n<text>
		if i := bytes.Index(msg, []byte("\r\n")); i >= 0 {
			msg = msg[i+2:]
		}
	}
	code := "ERR"
	if i := bytes.IndexByte(msg[:min(len(msg), 31)], ' '); i > 0 {
		code = string(msg[:i])
	}
	cs.mu.Lock()
	if _, ok := cs.codes[code]; ok || len(cs.codes) < maxErrorCodes {
		cs.codes[code]++
	}
	cs.mu.Unlock()
}

// ErrorReplies is total_error_replies.
func (cs *CommandStats) ErrorReplies() int64 { return cs.errors.Load() }

// Unknown counts unknown commands and subcommands.
func (cs *CommandStats) Unknown() int64 { return cs.unknown.Load() }

// commandstatsLines formats INFO commandstats: one line per command or subcommand that was called
// or refused, sorted by name.
func (cs *CommandStats) commandstatsLines() []string {
	specs := make([]*Spec, len(specList))
	copy(specs, specList)
	sortSpecs(specs)
	var out []string
	for _, s := range specs {
		st := &cs.cmds[s.index]
		calls, usec, rej, failed := st.Calls.Load(), st.Usec.Load(), st.Rejected.Load(), st.Failed.Load()
		if calls == 0 && rej == 0 && failed == 0 {
			continue
		}
		per := 0.0
		if calls > 0 {
			per = float64(float32(usec) / float32(calls)) // Redis divides in float
		}
		out = append(out, fmt.Sprintf("cmdstat_%s:calls=%d,usec=%d,usec_per_call=%.2f,rejected_calls=%d,failed_calls=%d",
			s.Name, calls, usec, per, rej, failed))
	}
	return out
}

// errorstatsLines formats INFO errorstats, sorted by code.
func (cs *CommandStats) errorstatsLines() []string {
	cs.mu.Lock()
	out := make([]string, 0, len(cs.codes))
	for code, n := range cs.codes {
		out = append(out, fmt.Sprintf("errorstat_%s:count=%d", infoSafe(code), n))
	}
	cs.mu.Unlock()
	sort.Strings(out)
	return out
}

// infoSafe replaces the characters that would break an INFO line (Redis's getSafeInfoString).
func infoSafe(s string) string {
	return strings.NewReplacer("#", "_", ":", "_", "\r", "_", "\n", "_").Replace(s)
}

// CommandTotal is one command's results for qgate_commands_total: its subcommands (unknown ones too)
// are counted under the container's name, unknown commands under "unknown".
type CommandTotal struct {
	Command   string
	OK, Error int64
}

// Totals sums the counters per top-level command (only commands with a count).
func (cs *CommandStats) Totals() []CommandTotal {
	var out []CommandTotal
	for _, s := range specList {
		if strings.IndexByte(s.Name, '|') >= 0 {
			continue
		}
		var t CommandTotal
		add := func(st *CmdStat) {
			f := st.Failed.Load()
			t.OK += st.Calls.Load() - f
			t.Error += f + st.Rejected.Load() + st.unknownSub.Load()
		}
		add(&cs.cmds[s.index])
		for _, sub := range s.Subs {
			add(&cs.cmds[sub.index])
		}
		if t.OK != 0 || t.Error != 0 {
			t.Command = s.Name
			out = append(out, t)
		}
	}
	if n := cs.unknown.Load(); n > 0 {
		out = append(out, CommandTotal{Command: "unknown", Error: n})
	}
	return out
}
