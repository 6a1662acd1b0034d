// ioredis used as-is against qgate: the seed article's email worker pattern and the basics.
// Run by proxy/e2e_compat_test.go as: node ioredis_compat.js HOST PORT. Exits non-zero on failure.
const Redis = require("ioredis");
const assert = require("assert");

const [host, port] = [process.argv[2], Number(process.argv[3])];
const opts = { host, port, maxRetriesPerRequest: 1, retryStrategy: () => null };

async function main() {
  const r = new Redis(opts);
  assert.strictEqual(await r.ping(), "PONG");
  assert.strictEqual(await r.echo("hi"), "hi");
  await r.client("SETNAME", "worker-1");
  assert.strictEqual(await r.client("GETNAME"), "worker-1");
  assert.match(await r.info(), /redis_version:/);

  for (let i = 0; i < 3; i++) {
    await r.rpush("email_queue", JSON.stringify({ receiver: `user${i}@example.com`, content: "xxxxx" }));
  }
  assert.strictEqual(await r.llen("email_queue"), 3);
  for (let i = 0; i < 3; i++) {
    const [key, data] = await r.blpop("email_queue", 0);
    assert.strictEqual(key, "email_queue");
    assert.strictEqual(JSON.parse(data).receiver, `user${i}@example.com`);
  }
  assert.strictEqual(await r.blpop("email_queue", 0.2), null);
  assert.strictEqual(await r.lpop("email_queue"), null);
  await r.rpush("q", "a", "b", "c");
  assert.deepStrictEqual(await r.lrange("q", 0, -1), ["a", "b", "c"]);
  assert.deepStrictEqual(await r.lpop("q", 2), ["a", "b"]);

  const pipe = r.pipeline();
  for (let i = 0; i < 50; i++) pipe.rpush("p", i);
  pipe.llen("p");
  const res = await pipe.exec();
  assert.strictEqual(res[res.length - 1][1], 50);

  await assert.rejects(r.set("k", "v"), /unknown command 'set'/i);

  const sub = new Redis(opts);
  const got = new Promise((resolve) => sub.on("message", (ch, msg) => resolve([ch, msg])));
  assert.strictEqual(await sub.subscribe("events"), 1);
  assert.strictEqual(await r.publish("events", "hello"), 1);
  assert.deepStrictEqual(await got, ["events", "hello"]);

  sub.disconnect();
  r.disconnect();
  console.log("OK");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
