"""The distributor's QR poster: the parametric QR code (drawn with qrcode
from the ticket's url), avatar, nickname and shop name on a designed
background. Pure drawing; the job that calls it fetches what it needs."""
from __future__ import annotations

import io
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont, ImageOps

FONT = Path(__file__).with_name("fonts") / "wqy-microhei-gb2312.ttf"
SYSTEM_FONTS = ["/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
                "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"]
WIDTH, HEIGHT = 750, 1200
TOP, BOTTOM = (7, 193, 96), (4, 120, 70)  # WeChat green, darkening downwards
MAX_AVATAR_BYTES = 2 * 1024 * 1024


def _font(size: int, text: str = "") -> ImageFont.FreeTypeFont:
    font = ImageFont.truetype(str(FONT), size)
    missing = [c for c in text if not c.isspace() and font.getmask(c).getbbox() is None]
    for path in SYSTEM_FONTS if missing else []:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return font


def _fit(text: str, size: int, width: int) -> tuple[str, ImageFont.FreeTypeFont]:
    font = _font(size, text)
    while font.getlength(text) > width and len(text) > 1:
        text = text[:-1]
        if font.getlength(text + "…") <= width:
            return text + "…", font
    return text, font


def _background() -> Image.Image:
    img = Image.new("RGB", (WIDTH, HEIGHT), TOP)
    draw = ImageDraw.Draw(img)
    for y in range(HEIGHT):
        t = y / HEIGHT
        draw.line([(0, y), (WIDTH, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(TOP, BOTTOM)))
    for x, y, r in ((640, 90, 160), (90, 1100, 200), (700, 700, 90)):
        draw.ellipse((x - r, y - r, x + r, y + r), outline=(255, 255, 255), width=2)
    return img


def _avatar(avatar: bytes | None, nickname: str, size: int) -> Image.Image:
    picture = None
    if avatar and len(avatar) <= MAX_AVATAR_BYTES:
        try:
            picture = ImageOps.fit(Image.open(io.BytesIO(avatar)).convert("RGB"), (size, size))
        except (OSError, ValueError, Image.DecompressionBombError):
            picture = None
    if picture is None:
        picture = Image.new("RGB", (size, size), (255, 179, 0))
        letter = (nickname or "?")[:1]
        font = _font(size // 2, letter)
        ImageDraw.Draw(picture).text((size / 2, size / 2), letter, font=font, fill="white", anchor="mm")
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse((0, 0, size - 1, size - 1), fill=255)
    framed = Image.new("RGBA", (size, size))
    framed.paste(picture, (0, 0), mask)
    return framed


def render(qr_content: str, nickname: str, shop_name: str, invite_code: str,
           avatar: bytes | None = None) -> bytes:
    img = _background()
    draw = ImageDraw.Draw(img)
    face = _avatar(avatar, nickname, 120)
    draw.ellipse((61, 81, 189, 209), fill="white")
    img.paste(face, (65, 85), face)
    name, font = _fit(nickname, 40, WIDTH - 260)
    draw.text((215, 105), name, font=font, fill="white")
    draw.text((215, 160), "邀请你一起边买边赚", font=_font(28), fill=(220, 255, 235))

    title, font = _fit(shop_name, 52, WIDTH - 120)
    draw.text((WIDTH / 2, 300), title, font=font, fill="white", anchor="mm")
    draw.text((WIDTH / 2, 362), "品牌正品 · 好友推荐 · 放心购", font=_font(28), fill=(220, 255, 235), anchor="mm")

    card = (95, 420, WIDTH - 95, 1010)
    draw.rounded_rectangle(card, radius=28, fill="white")
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=10, border=1)
    code.add_data(qr_content)
    code.make(fit=True)
    qr_img = code.make_image(fill_color="black", back_color="white").get_image().convert("RGB")
    qr_img = qr_img.resize((420, 420), Image.NEAREST)
    img.paste(qr_img, ((WIDTH - 420) // 2, 455))
    draw.text((WIDTH / 2, 918), "长按识别二维码，关注并进店", font=_font(30), fill=(51, 51, 51), anchor="mm")
    draw.text((WIDTH / 2, 965), f"邀请码  {invite_code}", font=_font(32), fill=(7, 160, 80), anchor="mm")

    draw.text((WIDTH / 2, 1090), "分享给好友或朋友圈，好友下单你得佣金", font=_font(26), fill=(220, 255, 235),
              anchor="mm")
    out = io.BytesIO()
    img.save(out, "PNG", optimize=True)
    return out.getvalue()
