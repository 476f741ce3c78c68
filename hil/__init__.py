"""HIL harness: drive Raspberry Pi edge hubs over SSH, serial console and PDU."""

__version__ = "0.1.0"
