"""Telephony providers behind one seam: Twilio and a simulator."""
