"""The capture stage: reads the Lepton's VoSPI stream (or a stand-in) and publishes raw frames."""
