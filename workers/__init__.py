"""Workers: the dispatcher process and the telephony providers it places calls through."""
