package proxy_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// Ordering and counts of pub/sub replies, compared byte for byte with redis-server 7.0.

// pushHead is the frame type of pub/sub replies and messages: RESP2 arrays, RESP3 pushes.
func pushHead(proto int) string {
	if proto == 3 {
		return ">"
	}
	return "*"
}

// TestRaw_PipelinedPublishThenSubscribe: PUBLISH runs before a SUBSCRIBE pipelined after it, so it
// counts nobody and the client never gets its own message.
func TestRaw_PipelinedPublishThenSubscribe(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		for _, proto := range []int{2, 3} {
			t.Run("RESP"+strconv.Itoa(proto), func(t *testing.T) {
				ch := "order-" + strconv.Itoa(proto)
				h := pushHead(proto)
				c, rd := dialRaw(t, tg.addr)
				pub, prd := dialRaw(t, tg.addr)
				if proto == 3 {
					send(t, c, "HELLO 3\r\n")
					expectHello(t, rd, 3, tg.version)
				}
				send(t, c, "PUBLISH "+ch+" hi\r\nSUBSCRIBE "+ch+"\r\n")
				expect(t, rd, ":0\r\n"+h+"3\r\n$9\r\nsubscribe\r\n"+bulk(ch)+":1\r\n")
				// The next message is one published later: "hi" never comes.
				send(t, pub, "PUBLISH "+ch+" later\r\n")
				expect(t, prd, ":1\r\n")
				expect(t, rd, h+"3\r\n$7\r\nmessage\r\n"+bulk(ch)+bulk("later"))

				// Queued commands before and after a SUBSCRIBE and UNSUBSCRIBE in one pipeline.
				if proto == 3 {
					ch2 := ch + "-b"
					send(t, c, "RPUSH "+ch2+" a\r\nPUBLISH "+ch2+" x\r\nSUBSCRIBE "+ch2+"\r\nLLEN "+ch2+
						"\r\nUNSUBSCRIBE "+ch2+"\r\nPUBLISH "+ch2+" y\r\nLPOP "+ch2+"\r\n")
					expect(t, rd, ":1\r\n:0\r\n>3\r\n$9\r\nsubscribe\r\n"+bulk(ch2)+":2\r\n:1\r\n"+
						">3\r\n$11\r\nunsubscribe\r\n"+bulk(ch2)+":1\r\n:0\r\n$1\r\na\r\n")
					expectAlive(t, c, rd)
				}
			})
		}
	})
}

// TestRaw_PublishToOwnChannelRESP3: a RESP3 client subscribed to the channel it publishes to gets the
// message (and the pattern message) before PUBLISH's reply, also when pipelined.
func TestRaw_PublishToOwnChannelRESP3(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "HELLO 3\r\n")
		expectHello(t, rd, 3, tg.version)
		send(t, c, "SUBSCRIBE own\r\n")
		expect(t, rd, ">3\r\n$9\r\nsubscribe\r\n$3\r\nown\r\n:1\r\n")
		send(t, c, "PUBLISH own hi\r\n")
		expect(t, rd, ">3\r\n$7\r\nmessage\r\n$3\r\nown\r\n$2\r\nhi\r\n:1\r\n")

		send(t, c, "PSUBSCRIBE ow*\r\n")
		expect(t, rd, ">3\r\n$10\r\npsubscribe\r\n$3\r\now*\r\n:2\r\n")
		send(t, c, "PUBLISH own ho\r\n")
		expect(t, rd, ">3\r\n$7\r\nmessage\r\n$3\r\nown\r\n$2\r\nho\r\n>4\r\n$8\r\npmessage\r\n$3\r\now*\r\n$3\r\nown\r\n$2\r\nho\r\n:2\r\n")

		msgs := func(v string) string {
			return ">3\r\n$7\r\nmessage\r\n$3\r\nown\r\n" + bulk(v) + ">4\r\n$8\r\npmessage\r\n$3\r\now*\r\n$3\r\nown\r\n" + bulk(v) + ":2\r\n"
		}
		send(t, c, "PUBLISH own a\r\nPUBLISH own b\r\nPUBLISH owl c\r\nPING\r\nPUBLISH other d\r\n")
		expect(t, rd, msgs("a")+msgs("b")+">4\r\n$8\r\npmessage\r\n$3\r\now*\r\n$3\r\nowl\r\n$1\r\nc\r\n:1\r\n+PONG\r\n:0\r\n")
		expectAlive(t, c, rd)
	})
}

// TestRaw_UnsubscribeRepliedBeforePublishNotCounted runs 100 tries of: subscribers a and b on one
// channel; a unsubscribes and gets its reply; then b unsubscribes and, at the same instant, another
// client publishes. a must never be counted (its UNSUBSCRIBE was answered before the PUBLISH was sent);
// b may be, as the two race, but only if b gets the message, before its UNSUBSCRIBE reply. So the
// count must equal the messages received, every time.
func TestRaw_UnsubscribeRepliedBeforePublishNotCounted(t *testing.T) {
	const tries = 100
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		a, ra := dialRaw(t, tg.addr)
		b, rb := dialRaw(t, tg.addr)
		p, rp := dialRaw(t, tg.addr)
		counted := 0
		for i := 0; i < tries; i++ {
			send(t, a, "SUBSCRIBE race\r\n")
			expect(t, ra, "*3\r\n$9\r\nsubscribe\r\n$4\r\nrace\r\n:1\r\n")
			send(t, b, "SUBSCRIBE race\r\n")
			expect(t, rb, "*3\r\n$9\r\nsubscribe\r\n$4\r\nrace\r\n:1\r\n")
			send(t, a, "UNSUBSCRIBE race\r\n")
			expect(t, ra, "*3\r\n$11\r\nunsubscribe\r\n$4\r\nrace\r\n:0\r\n")

			send(t, b, "UNSUBSCRIBE race\r\n")
			send(t, p, "PUBLISH race m"+strconv.Itoa(i)+"\r\n")
			n := readInt(t, rp)
			// b: the message, if it got one, then its UNSUBSCRIBE reply.
			got := 0
			expect(t, rb, "*3\r\n$")
			if next := peekByte(t, rb); next == '7' {
				expect(t, rb, "7\r\nmessage\r\n$4\r\nrace\r\n"+bulk("m"+strconv.Itoa(i)))
				got = 1
				expect(t, rb, "*3\r\n$")
			}
			expect(t, rb, "11\r\nunsubscribe\r\n$4\r\nrace\r\n:0\r\n")
			if n != got {
				t.Fatalf("try %d: PUBLISH counted %d, but %d subscribers got the message", i, n, got)
			}
			// a gets nothing after its UNSUBSCRIBE reply: its next reply is PING's.
			send(t, a, "PING\r\n")
			expect(t, ra, "+PONG\r\n")
			counted += n
		}
		t.Logf("%s: the subscriber leaving at that instant was counted (and got the message) in %d of %d tries", tg.name, counted, tries)
	})
}

// readInt reads an integer reply.
func readInt(t *testing.T, rd *rawReader) int {
	t.Helper()
	_ = rd.c.SetReadDeadline(time.Now().Add(rawTimeout))
	line, err := rd.br.ReadString('\n')
	if err != nil || len(line) < 4 || line[0] != ':' {
		t.Fatalf("want an integer reply, got %q, %v", line, err)
	}
	n, err := strconv.Atoi(line[1 : len(line)-2])
	if err != nil {
		t.Fatalf("integer reply %q: %v", line, err)
	}
	return n
}

// peekByte returns the next byte without consuming it.
func peekByte(t *testing.T, rd *rawReader) byte {
	t.Helper()
	_ = rd.c.SetReadDeadline(time.Now().Add(rawTimeout))
	b, err := rd.br.Peek(1)
	if err != nil {
		t.Fatal(fmt.Errorf("peek: %w", err))
	}
	return b[0]
}
