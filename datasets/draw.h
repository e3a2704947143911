// Drawing on RGB images for pictures a person looks at: box outlines, filled rectangles and short labels
// in a built-in 5x7 bitmap font (upper-case letters, digits and " -/.:%()?+=,_"; lower case is drawn as upper
// case, any other character as '?'). Everything is clipped to the image, so callers may draw boxes that
// stick out of it.
#pragma once
#include <cstdint>
#include <string_view>

#include "datasets/image_io.h"

namespace icd {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

// A colour per class index that stays distinguishable for the first dozen or so classes.
Rgb palette_colour(int index);

// Corners are inclusive pixel coordinates; the outline grows inwards by `thickness` pixels.
void draw_rectangle(Image& image, int x0, int y0, int x1, int y1, Rgb colour, int thickness = 1);
void fill_rectangle(Image& image, int x0, int y0, int x1, int y1, Rgb colour);

// Glyphs are 5x7 pixels plus one pixel of spacing, each pixel drawn as a scale x scale square.
inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;
int text_width(std::string_view text, int scale = 1);
int text_height(int scale = 1);
void draw_text(Image& image, int x, int y, std::string_view text, Rgb colour, int scale = 1);

// Text on a filled background with a one-pixel margin, its top-left corner at (x, y) but moved inside
// the image when it would stick out. Returns nothing: it is for pictures, not for measurement.
void draw_label(Image& image, int x, int y, std::string_view text, Rgb background, Rgb foreground,
                int scale = 1);

}  // namespace icd
