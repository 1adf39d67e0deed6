// Package event is the server's notifier of RFC 6665 (SIP-specific event
// notification): subscriptions are dialogs created by SUBSCRIBE, kept alive
// by refreshes and ended by Expires: 0, by their expiry, or by a NOTIFY the
// watcher refuses; every change of a resource's state becomes a NOTIFY to
// its subscribers, rate-limited per subscription (§4.1.2.1) so a burst of
// changes turns into at most one NOTIFY per interval carrying the latest
// state.
//
// Event packages (presence, presence.winfo, message-summary, dialog, reg)
// are plug-ins implementing Package: they name themselves, say which bodies
// they can send, decide who may watch what, and render the state. The
// Notifier does the rest: dialog state, CSeq, Subscription-State, timers,
// rate limiting, the bound on NOTIFYs in flight, the store.
//
// # Concurrency and timers
//
// One mutex guards the subscriptions. Every timed event of every
// subscription (its expiry, the end of its rate-limit interval, the
// deadline of its NOTIFY in flight) waits in one heap behind a single Clock
// timer: no goroutine and no runtime timer per subscription. NOTIFYs are
// built under the mutex (CSeq, headers) but their bodies are rendered
// (Package.Document) and handed to the Sender after it is released, so a
// package may call back into the Notifier and a Sender may answer
// synchronously. The Sender must not block.
//
// At most one NOTIFY per subscription is in flight; a change meanwhile
// only marks the subscription dirty, and the NOTIFY that follows carries
// the state of that moment (coalescing). Config.MaxPending caps the NOTIFY
// transactions in flight over all subscriptions; due subscriptions beyond
// it wait in a FIFO, each at most once, so the wait costs no memory beyond
// the subscription and nothing is dropped.
//
// # Store
//
// With Env.Store, a subscription is written before its 2xx (new and
// refreshed ones, synchronously in HandleSUBSCRIBE) and removed when it
// ends (by one writer goroutine, as are state changes from Reauthorize),
// so subscriptions survive a restart without watchers re-subscribing. The
// local CSeq is not written per NOTIFY: on load it resumes above the stored
// one by a margin that bounds the NOTIFYs the rate limit allowed since
// (see resumeSeq).
//
// Metrics: namespace hlas, subsystem event. Logs: feature=event.
package event
