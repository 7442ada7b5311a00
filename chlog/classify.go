package chlog

import (
	"strconv"
	"strings"
)

// failClass is what the replayer does with a spooled block whose insert
// failed.
type failClass int

const (
	// failTransient: the server or the way to it is unwell; the block is
	// fine. Retried with backoff, as long as it takes.
	failTransient failClass = iota
	// failReject: the block can never be inserted as it is (its bytes are
	// not a valid Native block). It is moved to spool_dir/rejected/ with the
	// server's text beside it and the queue moves on.
	failReject
	// failSchema: the table and the block disagree (a column's type, a
	// missing column), or the server refused the block for a reason the
	// relay does not know. Nothing is wrong with the data, and the operator
	// can fix the table: the block stays at the head and is retried, and
	// the relay is loud about it (relay_storage_blocked = 1, an error line
	// naming the column at most once a minute).
	failSchema
)

func (c failClass) String() string {
	switch c {
	case failReject:
		return "reject"
	case failSchema:
		return "schema"
	default:
		return "transient"
	}
}

// ClickHouse exception codes by class. The codes marked (seen) are what
// ClickHouse 18.16 answered to the relay's own insert (raw Native, LZ4
// framed, decompress=1) in TestClassifyServerErrors; the others come from
// ClickHouse's ErrorCodes list and keep their meaning on current servers.
//
// Reject (the block's bytes are not an insertable Native block):
//
//	32 ATTEMPT_TO_READ_AFTER_EOF (seen: column count larger than the data)
//	33 CANNOT_READ_ALL_DATA (seen: random bytes, a block cut short, a wrong row count)
//	50 UNKNOWN_TYPE (seen, HTTP 404: a column type name that does not exist)
//	62 SYNTAX_ERROR (seen: a wrong row count makes the server read row bytes
//	    as the next column's type name; the INSERT text itself is the relay's own)
//	3 UNEXPECTED_END_OF_FILE, 6 CANNOT_PARSE_TEXT, 9 SIZES_OF_COLUMNS_DOESNT_MATCH,
//	13 SIZES_OF_COLUMNS_IN_TUPLE_DOESNT_MATCH, 15 DUPLICATE_COLUMN, 19 SIZE_OF_FIXED_STRING_DOESNT_MATCH,
//	20 NUMBER_OF_COLUMNS_DOESNT_MATCH, 27 CANNOT_PARSE_INPUT_ASSERTION_FAILED,
//	30 CANNOT_READ_SIZE_OF_COMPRESSED_CHUNK, 31 CANNOT_READ_COMPRESSED_CHUNK,
//	38 CANNOT_PARSE_DATE, 39 TOO_LARGE_SIZE_COMPRESSED, 40 CHECKSUM_DOESNT_MATCH,
//	41 CANNOT_PARSE_DATETIME, 72 CANNOT_PARSE_NUMBER, 73 UNKNOWN_FORMAT,
//	89 UNKNOWN_COMPRESSION_METHOD (seen on a corrupt LZ4 frame: wrong magic),
//	117 INCORRECT_DATA, 128 TOO_LARGE_ARRAY_SIZE, 131 TOO_LARGE_STRING_SIZE,
//	190 SIZES_OF_ARRAYS_DOESNT_MATCH, 246 CORRUPTED_DATA, 261 UNKNOWN_BLOCK_INFO_FIELD,
//	271 CANNOT_DECOMPRESS, 321 VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE,
//	349 CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN, 377 ILLEGAL_SYNTAX_FOR_DATA_TYPE
//	241 MEMORY_LIMIT_EXCEEDED when one allocation alone is larger than the
//	    limit (seen: a wrong row count, where a length read from row bytes
//	    asked for 512 TiB); otherwise transient, below
//
// Schema (retried, loud):
//
//	368 BAD_CAST (seen: every column type change under the relay on 18.16,
//	    e.g. String to UInt32, UInt16 to String, Nullable(UInt32) to UInt32,
//	    Array(String) to String; the text does not name the column)
//	8 THERE_IS_NO_COLUMN, 10 NOT_FOUND_COLUMN_IN_BLOCK, 16 NO_SUCH_COLUMN_IN_TABLE,
//	43 ILLEGAL_TYPE_OF_ARGUMENT, 44 ILLEGAL_COLUMN, 47 UNKNOWN_IDENTIFIER,
//	53 TYPE_MISMATCH, 70 CANNOT_CONVERT_TYPE, 122 INCOMPATIBLE_COLUMNS, 386 NO_COMMON_TYPE
//	and every code not listed anywhere here.
//
// Transient (retried with backoff; the block is fine):
//
//	60 UNKNOWN_TABLE, 81 UNKNOWN_DATABASE (seen, HTTP 404: the replayer re-creates them)
//	159 TIMEOUT_EXCEEDED, 241 MEMORY_LIMIT_EXCEEDED, 164 READONLY (seen on other queries)
//	160 TOO_SLOW, 173 CANNOT_ALLOCATE_MEMORY, 192 UNKNOWN_USER, 193 WRONG_PASSWORD,
//	194 REQUIRED_PASSWORD, 195 IP_ADDRESS_NOT_ALLOWED, 201 QUOTA_EXPIRED,
//	202 TOO_MANY_SIMULTANEOUS_QUERIES, 203 NO_FREE_CONNECTION, 209 SOCKET_TIMEOUT,
//	210 NETWORK_ERROR, 216 QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING, 218 TABLE_IS_DROPPED,
//	225 NO_ZOOKEEPER, 236 ABORTED, 242 TABLE_IS_READ_ONLY, 243 NOT_ENOUGH_SPACE,
//	252 TOO_MANY_PARTS, 285 TOO_FEW_LIVE_REPLICAS, 286 UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE,
//	319 UNKNOWN_STATUS_OF_INSERT, 364 RECEIVED_ERROR_TOO_MANY_REQUESTS, 394 QUERY_WAS_CANCELLED,
//	425 SYSTEM_ERROR, 439 CANNOT_SCHEDULE_TASK, 497 ACCESS_DENIED, 516 AUTHENTICATION_FAILED
//	A cluster's (cluster.go; in cluster mode an unknown outcome, as a
//	Distributed insert may have stored other shards' parts):
//	279 ALL_CONNECTION_TRIES_FAILED (seen: a whole shard down), 242 and 225
//	above (seen: ZooKeeper down), 999 KEEPER_EXCEPTION (ZooKeeper session
//	lost during the insert)
//
// Besides exceptions: a refused connection, a timeout, a cut connection
// (errUnknownOutcome) and an HTTP error without a ClickHouse code (a proxy's
// 502) are transient. An unknown code is "schema", never "reject": a block
// is set aside only when the server said its bytes are broken. A reject
// code that came from another server's answer (fromAnotherServer: a shard's
// replica died during a Distributed insert) is transient.
var (
	rejectCodes = codeSet(3, 6, 9, 13, 15, 19, 20, 27, 30, 31, 32, 33, 38, 39, 40, 41, 50, 62, 72, 73, 89,
		117, 128, 131, 190, 246, 261, 271, 321, 349, 377)
	schemaCodes    = codeSet(8, 10, 16, 43, 44, 47, 53, 70, 122, 368, 386)
	transientCodes = codeSet(60, 81, 159, 160, 164, 173, 192, 193, 194, 195, 201, 202, 203, 209, 210, 216, 218,
		225, 236, 241, 242, 243, 252, 279, 285, 286, 319, 364, 394, 425, 439, 497, 516, 999)
)

const memoryLimitExceeded = 241

// allocationBeyondLimit reports whether a MEMORY_LIMIT_EXCEEDED text says a
// single allocation was larger than the limit itself: "... (attempt to
// allocate chunk of 562949953421312 bytes), maximum: 9.31 GiB".
func allocationBeyondLimit(msg string) bool {
	_, rest, ok := strings.Cut(msg, "allocate chunk of ")
	if !ok {
		return false
	}
	digits, rest, ok := strings.Cut(rest, " bytes")
	if !ok {
		return false
	}
	chunk, err := strconv.ParseFloat(digits, 64)
	if err != nil {
		return false
	}
	_, rest, ok = strings.Cut(rest, "maximum: ")
	f := strings.Fields(rest)
	if !ok || len(f) < 2 {
		return false
	}
	limit, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return false
	}
	scale := map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50}[strings.TrimRight(f[1], ".,:;)")]
	return scale > 0 && chunk > limit*scale
}

func codeSet(codes ...int) map[int]bool {
	m := make(map[int]bool, len(codes))
	for _, c := range codes {
		m[c] = true
	}
	return m
}

// classify sorts an insert error into its class (see the code lists above).
func classify(err error) failClass {
	e, ok := AsException(err)
	if !ok {
		return failTransient // network, timeout, unknown outcome, local
	}
	switch {
	case e.Code == 0:
		return failTransient // an HTTP error without a ClickHouse code: a proxy, an overloaded server
	case rejectCodes[e.Code] && fromAnotherServer(e.Message):
		// The bytes that ran short were another server's answer (a
		// shard's replica that died during a Distributed insert), not
		// the block: transient, and in cluster mode an unknown outcome.
		return failTransient
	case rejectCodes[e.Code]:
		return failReject
	case e.Code == memoryLimitExceeded && allocationBeyondLimit(e.Message):
		// One allocation larger than the server allows a whole query: a
		// length read from broken bytes (seen on 18.16: a block whose row
		// count was raised asked for 512 TiB). No retry can store it.
		return failReject
	case transientCodes[e.Code]:
		return failTransient
	default:
		return failSchema
	}
}

// fromAnotherServer reports whether an exception text says the error came
// while talking to another server of a cluster: ClickHouse adds "while
// receiving packet from <host:port>" to what went wrong reading a remote
// server's answer (Code 32, "Attempt to read after eof", when the server
// died mid-query).
func fromAnotherServer(msg string) bool {
	return strings.Contains(msg, "while receiving packet from ")
}

// columnInMessage returns the column a ClickHouse error text names, or "".
// Current servers say "No such column x in table", "There's no column 'x'",
// "Type mismatch for column x" or "column `x`"; 18.16's BAD_CAST names none.
func columnInMessage(msg string) string {
	lower := strings.ToLower(msg)
	for _, marker := range []string{"no such column ", "no column ", "for column ", "column "} {
		i := strings.Index(lower, marker)
		if i < 0 {
			continue
		}
		s := strings.TrimLeft(msg[i+len(marker):], "'`\" ")
		end := strings.IndexFunc(s, func(r rune) bool {
			return !(r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		})
		if end < 0 {
			end = len(s)
		}
		if name := strings.TrimRight(s[:end], "."); name != "" && name != "in" {
			return name
		}
	}
	return ""
}
