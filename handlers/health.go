package handlers

import "github.com/gofiber/fiber/v2"

// Healthz answers 200 while the process runs.
func (h *Relay) Healthz(c *fiber.Ctx) error {
	return plain(c, fiber.StatusOK, "ok\n")
}

// Readyz answers 200 while the relay takes traffic and 503 once it drains.
func (h *Relay) Readyz(c *fiber.Ctx) error {
	if !h.Ready() {
		return plain(c, fiber.StatusServiceUnavailable, "draining\n")
	}
	return plain(c, fiber.StatusOK, "ready\n")
}

// plain answers status with a short text body.
func plain(c *fiber.Ctx, status int, body string) error {
	c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
	return c.Status(status).SendString(body)
}
