// forward.c: the kernel fast path of hlas's media relay (media/plane).
//
// A tcx ingress program. For a UDP/IPv4 datagram whose destination is a
// leg's RTP port and whose source is the address the leg latched onto,
// it rewrites the addresses and ports to those the partner leg would send
// from and to, counts it, and hands it to the egress interface, where the
// kernel resolves the next hop as for a datagram sent from the partner's
// socket. Everything else (strangers, RTCP, IPv6, fragments, IP options)
// goes on to the stack and so to the leg's socket, where the userspace
// plane decides, exactly as without this program. Userspace writes the
// table: an entry exists only while the userspace plane would forward
// the same datagram to the same place.
//
// Built with: go generate ./media/plane (clang -target bpf; see gen.go).
// Self-contained on purpose: only the kernel's UAPI headers, no libbpf.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
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

#define TCX_NEXT -1 // TC_ACT_UNSPEC: not ours, on to the next program and the stack

// Offsets in a frame with an Ethernet header (Ethernet, veth, loopback:
// the loader attaches to no other kind) and an IPv4 header without
// options.
#define IP_OFF ETH_HLEN
#define UDP_OFF (IP_OFF + 20)
#define IP_CSUM (IP_OFF + 10)
#define UDP_CSUM (UDP_OFF + 6)

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
// to the partner's party, out of ifindex. slot indexes stats.
struct fwd4 {
	__be32 saddr, daddr;
	__be16 sport, dport;
	__u32 ifindex;
	__u32 slot;
};

// stat4 is what the kernel forwarded for one leg (by port pair):
// packets, payload bytes, and CLOCK_MONOTONIC ns of the latest.
struct stat4 {
	__u64 packets, bytes, last;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1); // the loader sizes it to the port range
	__type(key, struct key4);
	__type(value, struct fwd4);
} fwd4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stat4);
} stats SEC(".maps");

SEC("tcx/ingress")
int forward(struct __sk_buff *skb)
{
	if (skb->protocol != __constant_htons(ETH_P_IP))
		return TCX_NEXT;
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

	struct key4 k = {.daddr = ip->daddr, .saddr = ip->saddr, .dport = udp->dest, .sport = udp->source};
	struct fwd4 *f = bpf_map_lookup_elem(&fwd4, &k);
	if (!f)
		return TCX_NEXT;
	// RTCP multiplexed on the RTP port (RFC 5761 §4): userspace reads
	// the reports in it for the call's statistics.
	if (payload[1] >= 192 && payload[1] <= 223)
		return TCX_NEXT;
	__u32 len = __builtin_bswap16(udp->len);
	if (len < sizeof(struct udphdr) || len - sizeof(struct udphdr) > MAX_PAYLOAD)
		return TCX_NEXT;
	__u32 slot = f->slot;
	struct stat4 *st = bpf_map_lookup_elem(&stats, &slot);
	if (!st)
		return TCX_NEXT;

	__be32 saddr = f->saddr, daddr = f->daddr;
	__be16 sport = f->sport, dport = f->dport;
	__u32 ifindex = f->ifindex;
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

	__sync_fetch_and_add(&st->packets, 1);
	__sync_fetch_and_add(&st->bytes, len - sizeof(struct udphdr));
	st->last = bpf_ktime_get_ns();
	// Out of ifindex, with the route and neighbour the kernel finds for
	// the new addresses, as if sent from the partner leg's socket.
	return bpf_redirect_neigh(ifindex, 0, 0, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
