//! RESP2 and RESP3, the Redis serialization protocol, as far as a server
//! needs it.
//!
//! - [`decoder`]: requests from clients, incremental and bounded;
//! - [`inline`]: the word splitting of inline commands (telnet, nc);
//! - [`encoder`]: replies to clients, in the connection's protocol.
//!
//! Wire format, for reference (every line ends in CRLF):
//!
//! | type          | bytes                         |
//! |---------------|-------------------------------|
//! | simple string | `+OK\r\n`                     |
//! | error         | `-ERR message\r\n`            |
//! | integer       | `:42\r\n`                     |
//! | bulk string   | `$5\r\nhello\r\n`             |
//! | null bulk     | `$-1\r\n`                     |
//! | array         | `*2\r\n` then 2 elements      |
//! | null array    | `*-1\r\n`                     |
//! | RESP3 null    | `_\r\n`                       |
//! | RESP3 map     | `%1\r\n` then 1 key and value |
//! | RESP3 double  | `,1.5\r\n`                    |
//! | RESP3 verbatim| `=7\r\ntxt:abc\r\n`           |
//!
//! A request is an array of bulk strings, or one inline line of words.

pub mod decoder;
pub mod encoder;
pub mod inline;
pub(crate) mod integer;

pub use decoder::{Decoder, Limits};
pub use encoder::{encode, encode_as, encode_request, Protocol, Reply};
