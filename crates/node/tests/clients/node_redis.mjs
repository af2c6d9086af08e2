// node-redis (the npm package `redis`), as a new user runs it: default
// options, against a ballast node whose port is argv[2]. Prints one line
// per check; the Rust test compares them.
import { createRequire } from "node:module";
const require = createRequire(process.env.NODE_PATH_BASE + "/");
const { createClient } = require("redis");
const version = require("redis/package.json").version;

const client = createClient({ url: `redis://127.0.0.1:${process.argv[2]}` });
client.on("error", (e) => console.log("client-error", e.message));
await client.connect();
console.log("version", version);
console.log("first", await client.ping(), await client.set("a", "1"), await client.incr("a"));
console.log("setnx", await client.setNX("nx", "v"), await client.setNX("nx", "w"));
console.log("getset", await client.getSet("nx", "x"), await client.get("nx"));
console.log("missing", await client.get("missing"));
console.log("strlen", await client.strLen("nx"));
const piped = await client.multi().set("p", "1").incr("p").get("p").execAsPipeline();
console.log("pipeline", JSON.stringify(piped));
try {
  await client.incrBy("a", "9223372036854775807");
  console.log("overflow", "no error");
} catch (e) {
  console.log("overflow", e.message);
}
await client.quit();
