package handlers

import "github.com/gofiber/fiber/v2"

// Healthz answers 200 while the process runs.
func (h *Relay) Healthz(c *fiber.Ctx) error {
	return c.Status(fiber.StatusOK).SendString("ok\n")
}

// Readyz answers 200 while the relay takes traffic and 503 once it drains.
func (h *Relay) Readyz(c *fiber.Ctx) error {
	if !h.Ready() {
		return c.Status(fiber.StatusServiceUnavailable).SendString("draining\n")
	}
	return c.Status(fiber.StatusOK).SendString("ready\n")
}
