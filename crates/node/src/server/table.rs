//! The commands this node serves, as `COMMAND` describes them and as
//! metrics name them. One table, so `COMMAND COUNT`, `COMMAND LIST`,
//! `COMMAND INFO`, `COMMAND DOCS` and the per-command counters of
//! `/metrics` can never disagree.

use crate::resp::Reply;

/// One served command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lowercase name, as Redis prints it.
    pub name: &'static str,
    /// Redis's arity: positive for an exact count (name included),
    /// negative for "at least".
    pub arity: i64,
    /// Redis's command flags.
    pub flags: &'static [&'static str],
    /// Position of the first key argument (0: no keys).
    pub first_key: i64,
    /// Position of the last key argument (-1: the last argument).
    pub last_key: i64,
    /// Step between key arguments.
    pub key_step: i64,
    /// Redis's command group.
    pub group: &'static str,
    /// One line for `COMMAND DOCS`.
    pub summary: &'static str,
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        key_step: keys.2,
        group,
        summary,
    }
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

/// Every command, in the order `COMMAND LIST` prints them.
pub const COMMANDS: &[CommandSpec] = &[
    spec("ping", -1, &["fast"], NO_KEYS, "connection", "Returns the server's liveliness response."),
    spec("echo", 2, &["fast"], NO_KEYS, "connection", "Returns the given string."),
    spec("get", 2, &["readonly", "fast"], ONE_KEY, "string", "Returns the string value of a key."),
    spec("set", -3, &["write", "denyoom"], ONE_KEY, "string", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."),
    spec("del", -2, &["write"], ALL_KEYS, "generic", "Deletes one or more keys."),
    spec("exists", -2, &["readonly", "fast"], ALL_KEYS, "generic", "Determines whether one or more keys exist."),
    spec("mget", -2, &["readonly", "fast"], ALL_KEYS, "string", "Atomically returns the string values of one or more keys."),
    spec("mset", -3, &["write", "denyoom"], (1, -1, 2), "string", "Atomically creates or modifies the string values of one or more keys."),
    spec("incr", 2, &["write", "denyoom", "fast"], ONE_KEY, "string", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec("incrby", 3, &["write", "denyoom", "fast"], ONE_KEY, "string", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec("decr", 2, &["write", "denyoom", "fast"], ONE_KEY, "string", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec("expire", -3, &["write", "fast"], ONE_KEY, "generic", "Sets the expiration time of a key in seconds."),
    spec("pexpire", -3, &["write", "fast"], ONE_KEY, "generic", "Sets the expiration time of a key in milliseconds."),
    spec("ttl", 2, &["readonly", "fast"], ONE_KEY, "generic", "Returns the expiration time in seconds of a key."),
    spec("pttl", 2, &["readonly", "fast"], ONE_KEY, "generic", "Returns the expiration time in milliseconds of a key."),
    spec("persist", 2, &["write", "fast"], ONE_KEY, "generic", "Removes the expiration time of a key."),
    spec("scan", -2, &["readonly"], NO_KEYS, "generic", "Iterates over the key names in the database."),
    spec("flushall", -1, &["write"], NO_KEYS, "server", "Removes all keys from all databases."),
    spec("flushdb", -1, &["write"], NO_KEYS, "server", "Removes all keys from the current database."),
    spec("dbsize", 1, &["readonly", "fast"], NO_KEYS, "server", "Returns the number of keys in the database."),
    spec("info", -1, &["loading", "stale"], NO_KEYS, "server", "Returns information and statistics about the server."),
    spec("command", -1, &["loading", "stale"], NO_KEYS, "server", "Returns detailed information about all commands."),
    spec("auth", -2, &["noscript", "loading", "stale", "fast", "no_auth"], NO_KEYS, "connection", "Authenticates the connection."),
    spec("hello", -1, &["noscript", "loading", "stale", "fast", "no_auth"], NO_KEYS, "connection", "Handshakes with the server (RESP2 or RESP3)."),
    spec("quit", -1, &["noscript", "loading", "stale", "fast", "no_auth"], NO_KEYS, "connection", "Closes the connection."),
    spec("setnx", 3, &["write", "denyoom", "fast"], ONE_KEY, "string", "Set the string value of a key only when the key doesn't exist."),
    spec("getset", 3, &["write", "denyoom", "fast"], ONE_KEY, "string", "Returns the previous string value of a key after setting it to a new value."),
    spec("setex", 4, &["write", "denyoom"], ONE_KEY, "string", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist."),
    spec("psetex", 4, &["write", "denyoom"], ONE_KEY, "string", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist."),
    spec("decrby", 3, &["write", "denyoom", "fast"], ONE_KEY, "string", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."),
    spec("strlen", 2, &["readonly", "fast"], ONE_KEY, "string", "Returns the length of a string value."),
    spec("getrange", 4, &["readonly"], ONE_KEY, "string", "Returns a substring of the string stored at a key."),
    spec("unlink", -2, &["write", "fast"], ALL_KEYS, "generic", "Asynchronously deletes one or more keys."),
    spec("touch", -2, &["readonly", "fast"], ALL_KEYS, "generic", "Returns the number of existing keys out of those specified after updating the time they were last accessed."),
    spec("expireat", -3, &["write", "fast"], ONE_KEY, "generic", "Sets the expiration time of a key to a Unix timestamp."),
    spec("pexpireat", -3, &["write", "fast"], ONE_KEY, "generic", "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    spec("expiretime", 2, &["readonly", "fast"], ONE_KEY, "generic", "Returns the expiration time of a key as a Unix timestamp."),
    spec("pexpiretime", 2, &["readonly", "fast"], ONE_KEY, "generic", "Returns the expiration time of a key as a Unix milliseconds timestamp."),
    spec("keys", 2, &["readonly"], NO_KEYS, "generic", "Returns all key names that match a pattern."),
    spec("type", 2, &["readonly", "fast"], ONE_KEY, "generic", "Determines the type of value stored at a key."),
    spec("select", 2, &["loading", "stale", "fast"], NO_KEYS, "connection", "Changes the selected database (ballast has database 0 only)."),
    spec("time", 1, &["loading", "stale", "fast"], NO_KEYS, "server", "Returns the server time."),
    spec("client", -2, &[], NO_KEYS, "connection", "A container for client connection commands (ID, GETNAME, SETNAME, SETINFO, INFO, LIST)."),
    spec("cas", 4, &["write", "denyoom"], ONE_KEY, "string", "Sets a key to a new value only if it holds the expected value; replies 1 if it was swapped, 0 if not."),
    spec("getdel", 2, &["write", "fast"], ONE_KEY, "string", "Returns the string value of a key after deleting the key."),
    spec("getex", -2, &["write", "fast"], ONE_KEY, "string", "Returns the string value of a key after setting its expiration time."),
    spec("append", 3, &["write", "denyoom", "fast"], ONE_KEY, "string", "Appends a string to the value of a key. Creates the key if it doesn't exist."),
    spec("setrange", 4, &["write", "denyoom"], ONE_KEY, "string", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist."),
    spec("incrbyfloat", 3, &["write", "denyoom", "fast"], ONE_KEY, "string", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec("rename", 3, &["write"], (1, 2, 1), "keyspace", "Renames a key and overwrites the destination."),
    spec("renamenx", 3, &["write", "fast"], (1, 2, 1), "keyspace", "Renames a key only when the target key name doesn't exist."),
    spec("msetnx", -3, &["write", "denyoom"], (1, -1, 2), "string", "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    spec("multi", 1, &["noscript", "loading", "stale", "fast"], NO_KEYS, "transaction", "Starts a transaction."),
    spec("exec", 1, &["noscript", "loading", "stale"], NO_KEYS, "transaction", "Executes all commands in a transaction."),
    spec("discard", 1, &["noscript", "loading", "stale", "fast"], NO_KEYS, "transaction", "Discards a transaction."),
    spec("watch", -2, &["noscript", "loading", "stale", "fast"], ALL_KEYS, "transaction", "Monitors changes to keys to determine the execution of a transaction."),
    spec("unwatch", 1, &["noscript", "loading", "stale", "fast"], NO_KEYS, "transaction", "Forgets about watched keys of a transaction."),
];

/// The index in [`COMMANDS`] of the command named `name` (any case).
pub fn lookup(name: &[u8]) -> Option<usize> {
    COMMANDS
        .iter()
        .position(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

/// `COMMAND INFO` entry of one command: Redis 7's ten fields.
pub fn info_reply(spec: &CommandSpec) -> Reply {
    Reply::Array(vec![
        Reply::bulk(spec.name),
        Reply::Integer(spec.arity),
        Reply::Array(
            spec.flags
                .iter()
                .map(|flag| Reply::Simple((*flag).to_string()))
                .collect(),
        ),
        Reply::Integer(spec.first_key),
        Reply::Integer(spec.last_key),
        Reply::Integer(spec.key_step),
        Reply::Array(vec![Reply::Simple(format!("@{}", spec.group))]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ])
}

/// `COMMAND DOCS` entry of one command: its name and a map of facts (a
/// map in RESP3, flat arrays in RESP2, as Redis 7 answers).
pub fn docs_reply(spec: &CommandSpec) -> (Reply, Reply) {
    (
        Reply::bulk(spec.name),
        Reply::Map(vec![
            (Reply::bulk("summary"), Reply::bulk(spec.summary)),
            (Reply::bulk("since"), Reply::bulk("1.0.0")),
            (Reply::bulk("group"), Reply::bulk(spec.group)),
        ]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_the_parser_knows_is_in_the_table_and_back() {
        for spec in COMMANDS {
            // A name the parser does not know would answer "unknown
            // command"; arity errors mean it knows the name.
            let args: Vec<bytes::Bytes> = vec![spec.name.into()];
            if let Err(error) = crate::Command::parse(&args) {
                assert!(
                    !matches!(error, crate::Error::UnknownCommand { .. }),
                    "{} is in the table but not parsed",
                    spec.name
                );
            }
            assert_eq!(
                lookup(spec.name.to_uppercase().as_bytes()),
                Some(COMMANDS.iter().position(|s| s == spec).unwrap())
            );
        }
        assert_eq!(lookup(b"nosuchcommand"), None);
    }
}
