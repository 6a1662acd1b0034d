package envelope

import "testing"

func TestTail_PayloadMember(t *testing.T) {
	for _, tc := range []struct{ payload, want string }{
		{`{"a":1}`, `,"json":{"a":1}}`},
		{`,"producer":"p"`, `,"text":",\"producer\":\"p\""}`}, // the producer's own mark, as a payload
		{"hi", `,"text":"hi"}`},
		{"\xff", `,"b64":"/w=="}`},
		{"", `,"text":""}`},
	} {
		if got := Tail([]byte(tc.payload)); got != tc.want {
			t.Errorf("Tail(%q) = %q, want %q", tc.payload, got, tc.want)
		}
		env := string(Append(nil, "queue", "someone", []byte(tc.payload)))
		if got := Tail([]byte(tc.payload)); env[len(env)-len(got):] != got {
			t.Errorf("an envelope of %q does not end with its Tail %q: %q", tc.payload, got, env)
		}
	}
}
