// A grpc-js client of the trainer gateway, written from docs/API.md and proto/: it
// watches WatchRuns for ever, and when the stream ends UNAVAILABLE (or ABORTED) it
// retries after a short backoff (50 ms, doubling, at most 500 ms), resuming with
// since_seq = the last seq received ("Resuming" in docs/API.md).
//
//   node bench/js/watch_restart.js ADDR TOKEN OPTIONS_JSON [wait]
//
// With "wait", each call is made with waitForReady: while the channel reconnects the
// retried call waits for it instead of failing at once.
//
// OPTIONS_JSON: the channel options, e.g. '{}' (grpc-js defaults) or
// '{"grpc.initial_reconnect_backoff_ms":100,"grpc.max_reconnect_backoff_ms":500}'.
// Prints one JSON line per message that carries events, {"t": epoch ms, "seq", "events"},
// and one per failed call, {"t", "code", "details"}. Used by bench/watch_restart.py;
// the modules come from bench/js/node_modules or NODE_PATH (`npm install` in bench/js).
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [addr, token, optionsJson, mode] = process.argv.slice(2);
const callOptions = mode === 'wait' ? { waitForReady: true } : {};
const PROTO_ROOT = path.join(__dirname, '..', '..', 'proto');
const definition = protoLoader.loadSync('trainer/v1/trainer.proto', {
  includeDirs: [PROTO_ROOT], longs: Number, enums: String, defaults: true, oneofs: true,
});
const { TrainerService } = grpc.loadPackageDefinition(definition).trainer.v1;
const client = new TrainerService(addr, grpc.credentials.createInsecure(),
                                  JSON.parse(optionsJson || '{}'));
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.ABORTED]);

let sinceSeq = null;      // unset: live from now; then the last seq received
let backoff = 50;

function out(obj) { process.stdout.write(JSON.stringify({ t: Date.now(), ...obj }) + '\n'); }

function watch() {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  const request = sinceSeq === null ? {} : { since_seq: sinceSeq };
  const call = client.WatchRuns(request, metadata, callOptions);
  let ended = false;
  const retry = (code, details) => {
    if (ended) return;
    ended = true;
    out({ code, details });
    if (code !== null && !RETRYABLE.has(code)) process.exit(2);  // not to be retried
    setTimeout(watch, backoff);
    backoff = Math.min(backoff * 2, 500);
  };
  call.on('data', (msg) => {
    backoff = 50;
    sinceSeq = msg.seq;
    if (msg.events.length) out({ seq: msg.seq, events: msg.events.length });
  });
  call.on('error', (err) => retry(err.code, err.details));
  call.on('end', () => retry(null, 'ended'));   // a clean end: reconnect as well
}

process.on('SIGTERM', () => process.exit(0));
watch();
