"""Drop-in classes with other packages' APIs, on the native models.

* :mod:`xcodec.compat.xcodec2`: ``XCodec2Model`` of the ``xcodec2`` package (Llasa);
* :mod:`xcodec.compat.neucodec`: ``NeuCodec`` of the ``neucodec`` package (NeuTTS).

Each is imported on its own (``from xcodec.compat.xcodec2 import XCodec2Model``), so this
package imports nothing itself.
"""
