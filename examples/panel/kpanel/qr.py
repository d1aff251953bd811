"""The QR code of an otpauth URI as an inline SVG (one path, no script)."""

from .vendor.qrcodegen import QrCode

# Light modules around the code, as scanners expect.
QUIET_ZONE = 4


def svg(uri: str, title: str = "QR code for your authenticator app") -> str:
    """An <svg> element drawing ``uri`` (error correction level L, as
    kauthd's terminal drawing uses: a screen has no stains to correct)."""
    code = QrCode.encode_text(uri, QrCode.Ecc.LOW)
    size = code.get_size() + 2 * QUIET_ZONE
    cells = []
    for y in range(code.get_size()):
        for x in range(code.get_size()):
            if code.get_module(x, y):
                cells.append(f"M{x + QUIET_ZONE},{y + QUIET_ZONE}h1v1h-1z")
    return (
        f'<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'role="img" aria-label="{title}" shape-rendering="crispEdges">'
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path d="{"".join(cells)}" fill="#000"/></svg>'
    )
