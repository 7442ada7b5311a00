package handlers

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// Proxies are the addresses of the load balancers (or other proxies) in
// front of the relay whose X-Forwarded-For it believes (server.
// trusted_proxies). A request from anywhere else keeps its peer's address
// as its client_ip, whatever it claims.
type Proxies []netip.Prefix

// ParseProxies parses trusted proxies given as addresses or CIDR prefixes;
// the error names the entry.
func ParseProxies(list []string) (Proxies, error) {
	var ps Proxies
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, err
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			// ::ffff:10.0.0.0/104 is 10.0.0.0/8: peers are compared
			// unmapped.
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		ps = append(ps, p.Masked())
	}
	return ps, nil
}

// trusts reports whether a is one of the proxies.
func (ps Proxies) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP returns the address of the request's client: its peer, or, when
// the peer is a trusted proxy, the rightmost address of X-Forwarded-For
// that is not one (what the proxy nearest the client saw; entries left of
// it are the client's own word). When every entry is a proxy the leftmost
// is taken; a malformed entry ends the walk at the proxy behind it.
func (h *Relay) clientIP(ctx *fasthttp.RequestCtx) string {
	peer := ctx.RemoteIP()
	if len(h.o.TrustedProxies) == 0 {
		return peer.String()
	}
	a, ok := netip.AddrFromSlice(peer)
	if !ok || !h.o.TrustedProxies.trusts(a) {
		return peer.String()
	}
	lines := ctx.Request.Header.PeekAll(fasthttp.HeaderXForwardedFor)
	client := a.Unmap()
	for i := len(lines) - 1; i >= 0; i-- {
		v := lines[i]
		for len(v) > 0 {
			var entry []byte
			if j := bytes.LastIndexByte(v, ','); j >= 0 {
				entry, v = v[j+1:], v[:j]
			} else {
				entry, v = v, nil
			}
			e, ok := forwardedAddr(bytes.TrimSpace(entry))
			if !ok {
				return client.String()
			}
			client = e
			if !h.o.TrustedProxies.trusts(e) {
				return client.String()
			}
		}
	}
	return client.String()
}

// forwardedAddr parses one X-Forwarded-For entry: an address, with a port
// (some balancers add one; IPv6 then in brackets) or without.
func forwardedAddr(b []byte) (netip.Addr, bool) {
	s := string(b)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}
