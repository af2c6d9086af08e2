"""redis-py, as a new user runs it: default options (RESP3 with HELLO 3 in
redis-py 8), against a ballast node whose port is argv[1]. Prints one line
per check; the Rust test compares them."""
import sys

import redis

port = int(sys.argv[1])
r = redis.Redis(port=port)
print("version", redis.__version__)
print("first", r.ping(), r.set("a", 1), r.incr("a"))
# HELLO without a version answers the connection's protocol: a map (a
# dict in redis-py) in RESP3.
hello = r.execute_command("HELLO")
print("proto", type(hello).__name__, hello[b"proto"] if isinstance(hello, dict) else "-")
print("setnx", r.setnx("nx", "v"), r.setnx("nx", "w"), r.get("nx"))
print("getset", r.getset("nx", "x"), r.get("nx"))
print("strlen", r.strlen("nx"), r.strlen("missing"))
r.set("s", "This is a string")
print("getrange", r.getrange("s", 0, 3), r.getrange("s", -3, -1))
print("type", r.type("s"), r.type("missing"))
print("touch", r.touch("s", "s", "missing"))
print("decrby", r.decrby("a", 10))
print("missing", r.get("missing"))
r.client_setname("app")
print("name", r.client_getname())
print("select", r.execute_command("SELECT", 0))
print("keys", sorted(r.keys("n*")))
try:
    r.incrby("a", 2**63 - 1)
    r.incrby("a", 2**63 - 1)
    print("overflow", "no error")
except redis.ResponseError as e:
    print("overflow", e)
p = r.pipeline(transaction=False)
p.set("p1", "1").incr("p1").get("p1")
print("pipeline", p.execute())
info = r.info("server")
print("info", info["redis_version"])
# MULTI/EXEC as redis-py sends it, and WATCH with its retry helper.
t = r.pipeline(transaction=True)
t.set("t1", "1").incr("t1").incrbyfloat("t1", 0.5).getdel("t1").get("t1")
print("transaction", t.execute())
r.set("w", "5")
def double(pipe):
    value = int(pipe.get("w"))
    pipe.multi()
    pipe.set("w", value * 2)
print("watch", r.transaction(double, "w"), r.get("w"))
with r.pipeline(transaction=True) as p:
    p.watch("w")
    r.set("w", "changed")
    p.multi()
    p.set("w", "lost")
    try:
        p.execute()
        print("watched", "no error")
    except redis.WatchError:
        print("watched", "WatchError", r.get("w"))
print("strings", r.append("ap", "ab"), r.setrange("ap", 3, "x"), r.get("ap"),
      r.rename("ap", "ap2"), r.renamenx("ap2", "nx"), r.msetnx({"m1": 1, "m2": 2}),
      r.getex("m1", px=100000), r.expire("m1", 50, lt=True))
