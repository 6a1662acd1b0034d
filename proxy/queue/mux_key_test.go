package queue

import "testing"

// cmdKey finds the key a Cluster client routes the engine's commands by (the multiplexer's lanes).
func TestCmdKey_EngineCommands(t *testing.T) {
	for _, tc := range []struct {
		args []any
		key  string
		ok   bool
	}{
		{[]any{"evalsha", "abc", 4, "{q}:x", "q"}, "{q}:x", true},
		{[]any{"EVALSHA", "abc", "2", "q", "k"}, "q", true},
		{[]any{"eval", "return 1", 0}, "", false},
		{[]any{"evalsha", "abc", int64(0), "arg"}, "", false},
		{[]any{"rpush", "jobs", "a"}, "jobs", true},
		{[]any{"llen", []byte("jobs")}, "jobs", true},
		{[]any{"zrem", "{q}:qgate:waiters", "m"}, "{q}:qgate:waiters", true},
		{[]any{"wait", 1, 100}, "", false},
		{[]any{"publish", "ch", "m"}, "", false},
		{[]any{"ping"}, "", false},
		{[]any{"script", "load", "x"}, "", false},
		{[]any{"lpop", 7}, "", false},
	} {
		key, ok := cmdKey(tc.args)
		if key != tc.key || ok != tc.ok {
			t.Errorf("cmdKey(%v) = %q, %v; want %q, %v", tc.args, key, ok, tc.key, tc.ok)
		}
	}
}
