"""The pure core: statuses, phones, windows, the clock, record planning and batch settings. No I/O."""
