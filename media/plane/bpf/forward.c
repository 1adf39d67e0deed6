// forward.c: the kernel fast path of hlas's media relay (media/plane).
//
// A tcx ingress program. For a UDP datagram (IPv4, or IPv6 without
// extension headers) whose destination is a leg's RTP port and whose
// source is the address the leg latched onto, it rewrites the addresses
// and ports to those the partner leg would send from and to, counts it,
// and hands it to the egress interface, where the kernel resolves the
// next hop as for a datagram sent from the partner's socket. Everything
// else (strangers, RTCP, fragments, IP options or IPv6 extension
// headers) goes on to the stack and so to the leg's socket, where the
// userspace plane decides, exactly as without this program. Userspace writes the
// table: an entry exists only while the userspace plane would forward
// the same datagram to the same place.
//
// Built with: go generate ./media/plane (clang -target bpf; see gen.go).
// Self-contained on purpose: only the kernel's UAPI headers, no libbpf.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_l3_csum_replace)(struct __sk_buff *skb, __u32 off, __u64 from, __u64 to, __u64 size) = (void *)BPF_FUNC_l3_csum_replace;
static long (*bpf_l4_csum_replace)(struct __sk_buff *skb, __u32 off, __u64 from, __u64 to, __u64 flags) = (void *)BPF_FUNC_l4_csum_replace;
static long (*bpf_redirect_neigh)(__u32 ifindex, void *params, int plen, __u64 flags) = (void *)BPF_FUNC_redirect_neigh;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static __s64 (*bpf_csum_diff)(__be32 *from, __u32 from_size, __be32 *to, __u32 to_size, __wsum seed) = (void *)BPF_FUNC_csum_diff;
static long (*bpf_check_mtu)(void *ctx, __u32 ifindex, __u32 *mtu_len, __s32 len_diff, __u64 flags) = (void *)BPF_FUNC_check_mtu;

#define TCX_NEXT -1 // TC_ACT_UNSPEC: not ours, on to the next program and the stack

// Offsets in a frame with an Ethernet header (Ethernet, veth, loopback:
// the loader attaches to no other kind) and an IPv4 header without
// options.
#define IP_OFF ETH_HLEN
#define UDP_OFF (IP_OFF + 20)
#define IP_CSUM (IP_OFF + 10)
#define UDP_CSUM (UDP_OFF + 6)
// The same with an IPv6 header without extension headers.
#define UDP6_OFF (IP_OFF + 40)
#define UDP6_CSUM (UDP6_OFF + 6)

// The largest payload the userspace plane forwards (maxPacket); a longer
// one goes to it to be dropped and counted there.
#define MAX_PAYLOAD 2048

// key4 names one party's RTP flow: the leg's address and port, and the
// latched source. Network byte order.
struct key4 {
	__be32 daddr, saddr;
	__be16 dport, sport;
};

// fwd4 is where that flow goes: from the partner leg's address and port
// to the partner's party, out of ifindex. The flow must arrive on iif
// (where the route back to its source leads, as a strict reverse-path
// filter wants it). slot indexes stats.
struct fwd4 {
	__be32 saddr, daddr;
	__be16 sport, dport;
	__u32 ifindex;
	__u32 iif;
	__u32 slot;
};

// stat4 is what the kernel forwarded for one leg (by port pair):
// packets, payload bytes, and CLOCK_MONOTONIC ns of the latest.
struct stat4 {
	__u64 packets, bytes, last;
};

// Not preallocated: an element replaced by userspace is freed after an
// RCU grace period, so a program still reading it never sees another
// flow's fields (a preallocated map reuses the element at once).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1); // the loader sizes it to the port range
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct key4);
	__type(value, struct fwd4);
} fwd4 SEC(".maps");

// key6 and fwd6 are key4 and fwd4 for IPv6 legs.
struct key6 {
	__be32 daddr[4], saddr[4];
	__be16 dport, sport;
};

struct fwd6 {
	__be32 saddr[4], daddr[4];
	__be16 sport, dport;
	__u32 ifindex;
	__u32 iif;
	__u32 slot;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct key6);
	__type(value, struct fwd6);
} fwd6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stat4);
} stats SEC(".maps");

// take decides, for a datagram of a flow in the table, whether the
// program forwards it, and returns the flow's stats slot if so.
static __always_inline struct stat4 *take(struct __sk_buff *skb, __u8 second, __u32 iif, __u32 ifindex, __u32 slot)
{
	// RTCP multiplexed on the RTP port (RFC 5761 §4): userspace reads
	// the reports in it for the call's statistics.
	if (second >= 192 && second <= 223)
		return 0;
	// From another interface than the route back to the source: the
	// stack's reverse-path filter, and the reader, decide.
	if (iif && skb->ingress_ifindex != iif)
		return 0;
	// Too big for the way out: the stack fragments what the reader sends.
	__u32 mtu = 0;
	if (bpf_check_mtu(skb, ifindex, &mtu, 0, 0) != 0)
		return 0;
	return bpf_map_lookup_elem(&stats, &slot);
}

// send counts the datagram (len: its UDP length) and hands it to ifindex,
// with the route and neighbour the kernel finds for the new addresses,
// as if sent from the partner leg's socket.
static __always_inline int send(struct stat4 *st, __u32 len, __u32 ifindex)
{
	__sync_fetch_and_add(&st->packets, 1);
	__sync_fetch_and_add(&st->bytes, len - sizeof(struct udphdr));
	st->last = bpf_ktime_get_ns();
	return bpf_redirect_neigh(ifindex, 0, 0, 0);
}

static __always_inline int forward4(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + IP_OFF;
	struct udphdr *udp = data + UDP_OFF;
	__u8 *payload = data + UDP_OFF + sizeof(struct udphdr);
	if ((void *)(payload + 2) > end)
		return TCX_NEXT;
	if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return TCX_NEXT;
	if (ip->frag_off & __constant_htons(0x3fff)) // more fragments, or an offset
		return TCX_NEXT;
	if (ip->ttl <= 1) // a loop through the relay's own legs ends here
		return TCX_NEXT;
	__u32 len = __builtin_bswap16(udp->len);
	if (len < sizeof(struct udphdr) || len - sizeof(struct udphdr) > MAX_PAYLOAD ||
	    __builtin_bswap16(ip->tot_len) != 20 + len)
		return TCX_NEXT;

	struct key4 k = {.daddr = ip->daddr, .saddr = ip->saddr, .dport = udp->dest, .sport = udp->source};
	struct fwd4 *f = bpf_map_lookup_elem(&fwd4, &k);
	if (!f)
		return TCX_NEXT;
	struct fwd4 to = *f;
	struct stat4 *st = take(skb, payload[1], to.iif, to.ifindex, to.slot);
	if (!st)
		return TCX_NEXT;
	data = (void *)(long)skb->data; // the helpers may have moved the packet
	end = (void *)(long)skb->data_end;
	ip = data + IP_OFF;
	udp = data + UDP_OFF;
	if ((void *)(udp + 1) > end)
		return TCX_NEXT;

	__be32 saddr = to.saddr, daddr = to.daddr;
	__be16 sport = to.sport, dport = to.dport;
	__u32 ifindex = to.ifindex;
	__be32 osaddr = ip->saddr, odaddr = ip->daddr;
	__be16 osport = udp->source, odport = udp->dest;
	__be16 ottl = *(__be16 *)&ip->ttl; // TTL and protocol, one checksum word
	ip->ttl--;
	__be16 nttl = *(__be16 *)&ip->ttl;
	ip->saddr = saddr;
	ip->daddr = daddr;
	udp->source = sport;
	udp->dest = dport;
	// The helpers read the checksums from the packet and fix them up
	// (also a CHECKSUM_PARTIAL one, which holds only the pseudo-header
	// sum); a UDP checksum of zero (none) stays zero.
	bpf_l3_csum_replace(skb, IP_CSUM, osaddr, saddr, 4);
	bpf_l3_csum_replace(skb, IP_CSUM, odaddr, daddr, 4);
	bpf_l3_csum_replace(skb, IP_CSUM, ottl, nttl, 2);
	bpf_l4_csum_replace(skb, UDP_CSUM, osaddr, saddr, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
	bpf_l4_csum_replace(skb, UDP_CSUM, odaddr, daddr, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
	bpf_l4_csum_replace(skb, UDP_CSUM, osport, sport, BPF_F_MARK_MANGLED_0 | 2);
	bpf_l4_csum_replace(skb, UDP_CSUM, odport, dport, BPF_F_MARK_MANGLED_0 | 2);

	return send(st, len, ifindex);
}

static __always_inline int forward6(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip = data + IP_OFF;
	struct udphdr *udp = data + UDP6_OFF;
	__u8 *payload = data + UDP6_OFF + sizeof(struct udphdr);
	if ((void *)(payload + 2) > end)
		return TCX_NEXT;
	// No extension headers (fragments among them): only UDP right after.
	if (ip->version != 6 || ip->nexthdr != IPPROTO_UDP || ip->hop_limit <= 1)
		return TCX_NEXT;
	__u32 len = __builtin_bswap16(udp->len);
	if (len < sizeof(struct udphdr) || len - sizeof(struct udphdr) > MAX_PAYLOAD ||
	    __builtin_bswap16(ip->payload_len) != len)
		return TCX_NEXT;
	if (udp->check == 0) // mandatory over IPv6 (RFC 8200 §8.1): the stack drops it
		return TCX_NEXT;

	struct key6 k = {.dport = udp->dest, .sport = udp->source};
	__builtin_memcpy(k.daddr, &ip->daddr, 16);
	__builtin_memcpy(k.saddr, &ip->saddr, 16);
	struct fwd6 *f = bpf_map_lookup_elem(&fwd6, &k);
	if (!f)
		return TCX_NEXT;
	struct fwd6 to = *f;
	struct stat4 *st = take(skb, payload[1], to.iif, to.ifindex, to.slot);
	if (!st)
		return TCX_NEXT;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	ip = data + IP_OFF;
	udp = data + UDP6_OFF;
	if ((void *)(udp + 1) > end)
		return TCX_NEXT;

	__be16 osport = udp->source, odport = udp->dest;
	ip->hop_limit--; // not in the pseudo-header: no checksum to fix
	__builtin_memcpy(&ip->saddr, to.saddr, 16);
	__builtin_memcpy(&ip->daddr, to.daddr, 16);
	udp->source = to.sport;
	udp->dest = to.dport;
	// One difference for both addresses of the pseudo-header.
	__s64 diff = bpf_csum_diff(k.saddr, 16, to.saddr, 16, 0);
	diff = bpf_csum_diff(k.daddr, 16, to.daddr, 16, diff);
	bpf_l4_csum_replace(skb, UDP6_CSUM, 0, diff, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0);
	bpf_l4_csum_replace(skb, UDP6_CSUM, osport, to.sport, BPF_F_MARK_MANGLED_0 | 2);
	bpf_l4_csum_replace(skb, UDP6_CSUM, odport, to.dport, BPF_F_MARK_MANGLED_0 | 2);
	return send(st, len, to.ifindex);
}

SEC("tcx/ingress")
int forward(struct __sk_buff *skb)
{
	// A VLAN tag the kernel took off (vlan_tci) would go out with the
	// redirected packet: such a flow is forwarded by the stack, which
	// hands it to the VLAN device, where this program runs again. A
	// packet not for this host (a promiscuous bridge port) is not ours;
	// one GRO merged (a UDP GRO list) is several datagrams.
	if (skb->vlan_present || skb->pkt_type != 0 /* PACKET_HOST */ || skb->gso_segs > 1)
		return TCX_NEXT;
	if (skb->protocol == __constant_htons(ETH_P_IP))
		return forward4(skb);
	if (skb->protocol == __constant_htons(ETH_P_IPV6))
		return forward6(skb);
	return TCX_NEXT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
