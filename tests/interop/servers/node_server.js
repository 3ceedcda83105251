// A tiny Node.js http(s) server for the interop suite. Configured by env:
// HINTPOOL_HOST, HINTPOOL_PORT, HINTPOOL_ACCESS_LOG (one line per request:
// client port, requests so far on the socket, status, request line),
// HINTPOOL_KEEPALIVE_MS (server.keepAliveTimeout), HINTPOOL_MAX_REQUESTS
// (server.maxRequestsPerSocket), HINTPOOL_TLS_CERT / HINTPOOL_TLS_KEY.
"use strict";
const fs = require("fs");
const http = require("http");
const https = require("https");

const env = process.env;
const accessLog = env.HINTPOOL_ACCESS_LOG;
const body = "hello\n";

function handler(req, res) {
  const socket = req.socket;
  socket.hintpoolRequests = (socket.hintpoolRequests || 0) + 1;
  const port = socket.remotePort;
  const served = socket.hintpoolRequests;
  res.on("finish", () => {
    if (accessLog) {
      fs.appendFileSync(
        accessLog,
        `${port} ${served} ${res.statusCode} "${req.method} ${req.url}"\n`,
      );
    }
  });
  req.resume();
  req.on("end", () => {
    res.writeHead(200, {
      "Content-Type": "text/plain",
      "Content-Length": Buffer.byteLength(body),
    });
    res.end(body);
  });
}

const server = env.HINTPOOL_TLS_CERT
  ? https.createServer(
      {
        cert: fs.readFileSync(env.HINTPOOL_TLS_CERT),
        key: fs.readFileSync(env.HINTPOOL_TLS_KEY),
      },
      handler,
    )
  : http.createServer(handler);
if (env.HINTPOOL_KEEPALIVE_MS) {
  server.keepAliveTimeout = Number(env.HINTPOOL_KEEPALIVE_MS);
}
if (env.HINTPOOL_MAX_REQUESTS) {
  server.maxRequestsPerSocket = Number(env.HINTPOOL_MAX_REQUESTS);
}
server.on("error", (err) => {
  console.error(`node server error: ${err.message}`);
  process.exit(1);
});
process.on("SIGTERM", () => process.exit(0));
server.listen(Number(env.HINTPOOL_PORT), env.HINTPOOL_HOST, () => {
  console.log(`listening on ${env.HINTPOOL_HOST}:${server.address().port}`);
});
