// A bus subscriber in Node.js, over tcp with CURVE (docs/BUS.md, "tcp endpoints and CURVE").
//
//   trainer keys create alice      # on the orchestrator's host; copy the two files it names
//   TRAINER_BUS_SUB=tcp://head:5556 TRAINER_BUS_CURVE_KEY=alice.key_secret \
//   TRAINER_BUS_CURVE_SERVER=server.key node curve_subscriber.js [PREFIX] [COUNT]
//
// Prints one JSON line per message: {"topic", "type", "source", "seq", "payload"}.
"use strict";
const fs = require("fs");
const zmq = require("zeromq");
const { decode } = require("@msgpack/msgpack");

// A key file of `trainer keys` (pyzmq's certificate format): `public-key = "..."` lines.
function keyOf(path, name) {
  const found = fs.readFileSync(path, "utf8").match(new RegExp(`${name}\\s*=\\s*"(.{40})"`));
  if (!found) throw new Error(`${path}: no ${name} in it`);
  return found[1];
}

async function main() {
  const [prefix = "", count = "0"] = process.argv.slice(2);
  const env = process.env;
  const sock = new zmq.Subscriber({
    curveServerKey: keyOf(env.TRAINER_BUS_CURVE_SERVER, "public-key"),
    curvePublicKey: keyOf(env.TRAINER_BUS_CURVE_KEY, "public-key"),
    curveSecretKey: keyOf(env.TRAINER_BUS_CURVE_KEY, "secret-key"),
  });
  sock.connect(env.TRAINER_BUS_SUB);
  sock.subscribe(prefix);
  console.log(`listening on ${env.TRAINER_BUS_SUB}`);
  let seen = 0;
  for await (const [topic, frame] of sock) {
    const msg = decode(frame);
    console.log(JSON.stringify({ topic: topic.toString(), type: msg.type, source: msg.source,
                                 seq: msg.seq ?? null, payload: msg.payload }));
    if (++seen === Number(count)) break;
  }
  sock.close();
}

main().catch((err) => { console.error(err.message); process.exit(1); });
