"""Driver tests: real bytes over pseudo-terminals, a real Modbus server, gpiozero's MockFactory."""
