// Package upstream turns a relayed request into a call to the provider and
// copies the provider's answer back to the client as it arrives.
//
//   - Route holds one configured route: its upstream base URL, provider key,
//     extra headers and timeouts, and the pooled keep-alive fasthttp client of
//     its upstream host (Clients shares one client per host).
//   - Route.Open sends the request and waits for the response headers; the
//     Stream it returns is handed to fasthttp as the response body stream and
//     copies every upstream read to the client with a flush, stamping the
//     per-request record (TTFB, TTFT or TTFA, chunk times) on the way.
//   - Watchdog is one goroutine for all streams: it ends streams that stay
//     silent past their idle timeout or run past the request timeout, and it
//     notices clients that went away while the upstream was silent, which
//     fasthttp cannot report to a body stream (fasthttp issue 993).
//
// upstream knows nothing of ClickHouse, Redis or Fiber.
package upstream
