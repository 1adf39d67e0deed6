// Package security defends a public SIP server at its edge: it drops
// floods, bans scanners and password guessers, and limits calls against toll
// fraud. It is pure logic: the server feeds it addresses and what it saw
// and answered, and acts on what it says; nothing here parses SIP, opens
// sockets or starts goroutines, and every clock is injectable.
//
// The unit counted and banned is a source: an IPv4 address, or an IPv6 /64
// (Key), since whoever has one IPv6 address of a subscriber's LAN has them
// all. Trusted sources (Config.Trusted, by default the host itself) are
// never counted, limited or banned.
//
// Bans holds the banned prefixes, automatic and manual (`hlas ban add`).
// Banned is asked for every packet, before parsing, and costs one atomic
// load while nothing is banned. A banned source is dropped silently: an
// answer would make the server an amplifier. Bans expire; the server
// persists them through BansConfig.OnAdd and MarkStored, and picks up the
// operator's changes in its store with Sync.
//
// Guard is the flood guard, after Kamailio's pike: two token buckets per
// source and transport, one for every packet (checked before parsing) and
// one for new requests (after). A source that empties one is banned for
// FloodConfig.BanTime. Buckets that have filled up again are forgotten, so
// memory follows the sources active in the last seconds, within
// FloodConfig.MaxSources.
//
// Detector bans on behaviour reported by the server: a scanner's
// User-Agent; many users challenged from one source that never come back
// with credentials (extension scanning; phones answer a challenge at once,
// so an office behind one NAT is not taken for a scanner); many refusals
// (number scanning); many wrong passwords from one source. Wrong passwords
// for one account from many sources do not ban anyone: they slow that
// account's challenges down (ChallengeDelay), which makes guessing slow
// without locking the owner out.
//
// Limiter caps calls per user (at once, per minute, to costly prefixes
// per hour) and unauthenticated calls per source, so a stolen password
// cannot run up a large bill quickly.
package security
