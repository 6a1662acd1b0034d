package envelope

import (
	"strings"
	"time"
)

// Tail returns the bytes AppendEnvelope writes after the producer member for payload: its payload
// member (,"json":…, ,"text":"…" or ,"b64":"…") and the closing brace. An envelope written by
// AppendEnvelope holds payload exactly when it ends with Tail(payload) right after its producer
// member; the list edit scripts match items that way (proxy/rdb/scripts/list_match.lua).
func Tail(payload []byte) string {
	const mark = `,"producer":"p"`
	e := string(AppendEnvelope(nil, &Envelope{ID: "x", Queue: "q", Producer: "p", EnqueuedAt: time.Unix(0, 0), Payload: payload}))
	return e[strings.Index(e, mark)+len(mark):]
}
