"""redis-py used as-is against qgate: the seed article's email worker pattern and the basics.

Run by proxy/e2e_compat_test.go as: python3 redispy_compat.py HOST PORT. Exits non-zero on failure.
"""
import json
import sys
import time

import redis

host, port = sys.argv[1], int(sys.argv[2])
r = redis.Redis(host=host, port=port, db=0, decode_responses=True)

assert r.ping() is True
assert r.echo("hi") == "hi"
r.client_setname("worker-1")
assert r.client_getname() == "worker-1"
assert "redis_version" in r.info()

# The article's pattern: a web app pushes email tasks, a worker BLPOPs them.
for i in range(3):
    r.rpush("email_queue", json.dumps({"receiver": f"user{i}@example.com", "content": "xxxxx"}))
assert r.llen("email_queue") == 3
for i in range(3):
    key, data = r.blpop("email_queue", 0)
    assert key == "email_queue"
    assert json.loads(data)["receiver"] == f"user{i}@example.com"

assert r.blpop("email_queue", timeout=1) is None
assert r.lpop("email_queue") is None
r.rpush("q", "a", "b", "c")
assert r.lrange("q", 0, -1) == ["a", "b", "c"]
assert r.lpop("q", 2) == ["a", "b"]
assert r.rpop("q") == "c"

pipe = r.pipeline(transaction=False)
for i in range(50):
    pipe.rpush("p", i)
pipe.llen("p")
res = pipe.execute()
assert res[-1] == 50, res[-1]

try:
    r.set("k", "v")
    raise AssertionError("SET must be refused")
except redis.ResponseError as e:
    assert str(e).lower().startswith("unknown command 'set'"), str(e)

p = r.pubsub()
p.subscribe("events")
msg = p.get_message(timeout=5)
assert msg["type"] == "subscribe" and msg["channel"] == "events", msg
assert r.publish("events", "hello") == 1
deadline = time.time() + 5
msg = None
while msg is None and time.time() < deadline:
    msg = p.get_message(timeout=1)
assert msg and msg["type"] == "message" and msg["data"] == "hello", msg
p.close()
print("OK")
