"""End-to-end tests of signed alerts through the running station (`cunxiang run`)."""
