// Package app wires the relay together: it reads the configuration (koanf:
// YAML file, then RELAY_* environment overrides, with a .env file loaded
// into the environment first), builds each package from its own Options,
// serves Fiber on a listener, and runs the shutdown sequence: stop taking
// requests, let in-flight streams finish within the grace period, flush the
// ClickHouse logger, close the clients.
//
// Only app knows koanf and the configuration file's shape.
package app
