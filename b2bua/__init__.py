"""b2bua: SIP B2BUA with Diameter Ro online charging."""
