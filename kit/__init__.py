"""The device kit: `fsanet bundle` writes one self-contained folder for a device, `fsanet check`
runs it there (or over ssh) and says whether each artifact holds the budget on that device.

numpy plus one runtime backend is all a check needs: no torch, TensorFlow, OpenCV or
matplotlib, and no subprocess on its default path (it runs under qemu-user, which has no
binfmt_misc to start a foreign child).
"""
