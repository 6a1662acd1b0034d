package commands

import (
	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/queue"
)

// qgate's own commands and the helpers that apply queue and channel rules to the Redis commands.

func init() {
	register(
		&Spec{Name: "qdelivery", Arity: -1, Flags: Loading | Stale | Fast | SubscribedOK, Group: "qgate", Since: "qgate 0.1",
			Summary: "Shows or sets what this connection receives from enveloped items: the payload, the envelope, or what each queue's rule says (default).",
			Args:    []Arg{{Name: "mode", Type: "oneof", Optional: true, Sub: []Arg{{Name: "payload", Type: "pure-token", Token: "PAYLOAD"}, {Name: "envelope", Type: "pure-token", Token: "ENVELOPE"}, {Name: "default", Type: "pure-token", Token: "DEFAULT"}}}},
			Run:     qdelivery},
	)
}

func qdelivery(c Conn, args [][]byte) {
	s := c.Session()
	switch {
	case len(args) == 1:
		mode := s.Deliver
		if mode == "" {
			mode = "default"
		}
		c.Reply().BulkString(mode)
	case len(args) > 2:
		c.Reply().Error(WrongArgs("qdelivery"))
	case equalFold(args[1], "payload"):
		s.Deliver = "payload"
		c.Reply().OK()
	case equalFold(args[1], "envelope"):
		s.Deliver = "envelope"
		c.Reply().OK()
	case equalFold(args[1], "default"):
		s.Deliver = ""
		c.Reply().OK()
	default:
		c.Reply().Error("ERR QDELIVERY mode must be payload, envelope or default")
	}
}

// queuePolicy validates a queue name and returns its rule; on a bad name it replies with the error.
func queuePolicy(c Conn, queue string) (*policy.Policy, bool) {
	if !validQueue(c, queue) {
		return nil, false
	}
	return c.Server().Policies().Queue(queue), true
}

// validQueue is queuePolicy for a handler that does not need the rule (the engine resolves it).
func validQueue(c Conn, queue string) bool {
	if err := policy.ValidateName("queue", queue, false); err != nil {
		c.Reply().Error(sanitize("ERR " + err.Error()))
		return false
	}
	return true
}

// channelPolicy is queuePolicy for channels (and, with pattern, PSUBSCRIBE patterns).
func channelPolicy(c Conn, channel string, pattern bool) (*policy.Policy, bool) {
	kind := "channel"
	if pattern {
		kind = "pattern"
	}
	if err := policy.ValidateName(kind, channel, pattern); err != nil {
		c.Reply().Error(sanitize("ERR " + err.Error()))
		return nil, false
	}
	if pattern {
		return nil, true
	}
	return c.Server().Policies().Channel(channel), true
}

// WantsEnvelope reports whether a client in delivery mode mode ("" = the rule's) receives envelopes
// from a queue or channel whose rule is p.
func WantsEnvelope(mode string, p *policy.Policy) bool { return queue.WantsEnvelope(mode, p) }

// deliver returns what the client receives for an item stored on queue: the item itself when it is not
// an envelope or the client wants envelopes, otherwise the payload.
func deliver(c Conn, queue, item string) string {
	if !envelope.Is([]byte(item)) {
		return item
	}
	if WantsEnvelope(c.Session().Deliver, c.Server().Policies().Queue(queue)) {
		return item
	}
	return envelope.Payload(item)
}

// producer names the connection's user in envelopes.
func producer(c Conn) string {
	if u := c.Session().User; u != "" {
		return u
	}
	return "default"
}
