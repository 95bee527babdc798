"""The `bench` command line: `main` (entry point), argument types (args), the catalog of names
known without importing torch, plugin loading, the logging set-up (logs: status lines on
stderr, -q / -v), and one module per verb under commands/. May import any bench package;
nothing under bench/ imports cli/ except cli/ itself."""
