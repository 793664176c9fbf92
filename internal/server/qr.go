package server

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"image"
	"image/color"
	"image/png"

	"github.com/boombuler/barcode/qr"
)

// QR codes are drawn with medium error correction, a quiet zone of four
// modules (as ISO/IEC 18004 asks, so a camera finds the code whatever
// surrounds it), and whole-pixel modules, for about qrTargetPixels a side.
const (
	qrQuietModules = 4
	qrTargetPixels = 256
)

// qrCode is a rendered QR code.
type qrCode struct {
	PNG  []byte
	Size int // width and height in pixels
}

// newQRCode encodes content as a black-on-white PNG.
func newQRCode(content string) (*qrCode, error) {
	code, err := qr.Encode(content, qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("qr code: %w", err)
	}
	modules := code.Bounds().Dx()
	total := modules + 2*qrQuietModules
	scale := max(1, qrTargetPixels/total)
	size := total * scale

	img := image.NewPaletted(image.Rect(0, 0, size, size), color.Palette{color.White, color.Black})
	ox, oy := code.Bounds().Min.X, code.Bounds().Min.Y
	for my := range modules {
		for mx := range modules {
			if r, _, _, _ := code.At(ox+mx, oy+my).RGBA(); r > 0x7fff {
				continue // light module: the image is white already
			}
			x0, y0 := (mx+qrQuietModules)*scale, (my+qrQuietModules)*scale
			for y := y0; y < y0+scale; y++ {
				row := img.Pix[y*img.Stride:]
				for x := x0; x < x0+scale; x++ {
					row[x] = 1
				}
			}
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("qr code: %w", err)
	}
	return &qrCode{PNG: buf.Bytes(), Size: size}, nil
}

// DataURL is the image as a data: URL for an <img src>, which the
// Content-Security-Policy allows (img-src data:).
func (q *qrCode) DataURL() template.URL {
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(q.PNG))
}
