// Package acc is hlas's accounting: call detail records (CDRs) of the calls
// the proxy forwards, and optionally of MESSAGE requests and failed
// REGISTERs.
//
// # Where records come from
//
// Accounting implements proxy.Accounting. An INVITE outside a dialog that
// the proxy forwards statefully starts a tracked call; its first 2xx
// answers it (the fork branch that sent it is noted); a final response
// >= 300 (the caller's CANCEL included) ends it as a failed or cancelled
// call, except a digest challenge from downstream (401, 407): that makes
// no record, and the retry with credentials is tracked as the call. An
// INVITE outside a dialog whose Call-ID and From tag match a call
// already tracked, ringing or answered, is a spiral or a retransmission
// and starts nothing. An answered call ends with a BYE from either side, which passes
// the proxy because it record-routed the dialog; a call whose BYE never
// comes ends at Config.MaxDuration after the answer, or earlier when the
// endpoints negotiated session timers (RFC 4028) and no refresh came
// within the Session-Expires interval; EndCall ends one when something
// else learns it is dead (a media relay's inactivity timeout). A call
// answered without the proxy's Record-Route cannot be followed: it is
// recorded at the answer.
// An INVITE the server refuses or redirects itself, without forwarding
// it, is recorded by Refused (the server calls it for the stateless
// final responses it sends to INVITEs outside a dialog).
//
// # Media
//
// Accounting also implements proxy.MediaRecorder. When the proxy stops
// relaying a call's media (the BYE is forwarded, the initial INVITE
// fails, the relay ends the call for inactivity), it hands MediaStats
// what the relay counted, before the response or the EndCall that
// completes the record; the record carries it (store.CDR.MediaRelayed
// and the fields after it: packets, bytes and drops each way, the RTCP
// loss and jitter each party reported). The statistics wait in a map of
// their own, not in the tracked call, so calls whose media is not
// relayed pay nothing for them.
//
// # Durability
//
// A record is counted as written only once the transaction holding it has
// committed, and the response that completes it (the BYE's 200, the
// INVITE's final non-2xx, the MESSAGE's final response) goes upstream
// only after that commit. So when the caller has seen the BYE's 200, the
// record is on disk: a SIGKILL right after loses no finished call. The
// writes go through one goroutine in batches (group commit, as the
// registrar does), so one fsync serves every record that queued while the
// previous batch committed. A response on a call that already ended (the
// 200 of the second BYE of a glare, a retransmitted 2xx) waits for that
// call's record too, through a barrier in the writer's queue. Each commit
// attempt is bounded by CommitTimeout, so a hung store releases the held
// responses (the records counted as lost) instead of holding them. Close
// finishes the calls still open (as "shutdown"), flushes the queue, then
// writes the records of all those calls, outside the bounded queue.
//
// # Limits
//
// Config.MaxCalls bounds the tracked calls (those beyond it go unrecorded
// and are counted), Config.QueueSize the records waiting for the disk
// (beyond it the response is sent at once and the record dropped and
// counted). An answered call waiting for its BYE keeps only the strings
// of its record, copied into one allocation (not the INVITE, its 2xx or
// the packets they were parsed from), and no timer of its own: one timer,
// armed for the earliest deadline, ends the calls due. That is about
// 500 bytes a call, so the default 100000 calls hold about 50 MB. Timers
// come from the transaction layer's Clock; there is no package-level
// state.
//
// # Retention
//
// With Config.Retention set, records that completed (ended) longer ago
// than that are deleted when accounting starts and then every
// Config.PurgeInterval, by a goroutine that Close stops (interrupting a
// purge under way). The store deletes in chunks of its own transactions,
// so a large purge does not hold up the writer's commits. `hlas cdr
// purge` does the same by hand.
//
// # Metrics
//
// Namespace hlas, subsystem acc:
//
//	hlas_acc_records_total{kind,status}  records committed
//	hlas_acc_dropped_total{reason}       records lost: limit, queue_full, store_error, closed
//	hlas_acc_purged_total                records deleted for being older than the retention
//	hlas_acc_calls                       calls being tracked
//	hlas_acc_queue_length                records waiting for their commit
//	hlas_acc_store_write_seconds         duration of one batch commit
package acc
