#include "profile/profile_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <iterator>
#include <string_view>
#include <utility>
#include <vector>

namespace canvas {

using json = nlohmann::json;

namespace {

constexpr double kWidth = 1000, kHeight = 500;
constexpr double kLeft = 70, kRight = 980, kTop = 40, kBottom = 400;
constexpr double kLaneHeight = 10, kFirstLaneTop = 410, kLaneGap = 14;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr const char* kDeviceColors[] = {"#1f77b4", "#2ca02c", "#9467bd", "#d62728"};

[[gnu::format(printf, 1, 2)]] std::string format(const char* pattern, ...) {
  char text[512];
  va_list arguments;
  va_start(arguments, pattern);
  std::vsnprintf(text, sizeof(text), pattern, arguments);
  va_end(arguments);
  return text;
}

std::string xml_escape(std::string_view text) {
  std::string escaped;
  for (char c : text) {
    switch (c) {
      case '&':
        escaped += "&amp;";
        break;
      case '<':
        escaped += "&lt;";
        break;
      case '>':
        escaped += "&gt;";
        break;
      case '"':
        escaped += "&quot;";
        break;
      case '\'':
        escaped += "&apos;";
        break;
      default:
        escaped += c;
    }
  }
  return escaped;
}

// A tick spacing of 1, 2 or 5 times a power of ten giving about `ticks` ticks over `range`.
double tick_step(double range, int ticks) {
  const double raw = range / ticks;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double normalized = raw / magnitude;
  return magnitude * (normalized < 1.5 ? 1 : normalized < 3 ? 2 : normalized < 7 ? 5 : 10);
}

// A tick label with as many decimals as the step needs.
std::string tick_label(double value, double step) {
  const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  return format("%.*f", decimals, value);
}

struct Series {
  std::string label;
  std::string color;
  bool dashed;
  std::vector<std::pair<double, double>> points;  // (seconds, bytes)
};

struct Scale {
  double duration;
  double top_bytes;
  double x(double t) const { return kLeft + (kRight - kLeft) * std::clamp(t / duration, 0.0, 1.0); }
  double y(double bytes) const { return kBottom - (kBottom - kTop) * bytes / top_bytes; }
};

// The series as polyline points, at most three per pixel column (entering, highest, leaving value), so
// long jobs stay small without losing a peak.
std::string polyline_points(const Series& series, const Scale& scale) {
  std::vector<std::pair<double, double>> kept;
  long column = -1;
  size_t column_start = 0;
  for (const auto& [t, bytes] : series.points) {
    const double x = scale.x(t), y = scale.y(bytes);
    if (static_cast<long>(x) != column) {
      column = static_cast<long>(x);
      column_start = kept.size();
      kept.emplace_back(x, y);
    } else if (kept.size() - column_start == 1) {
      kept.emplace_back(x, y);
      kept.emplace_back(x, y);
    } else {
      if (y < kept[column_start + 1].second) kept[column_start + 1] = {x, y};
      kept.back() = {x, y};
    }
  }
  std::string text;
  for (const auto& [x, y] : kept) text += format("%.1f,%.1f ", x, y);
  return text;
}

std::vector<Series> memory_series(const json& profile, double duration) {
  std::vector<Series> series;
  const json& devices = profile["devices"];
  const double bucket = profile["allocation_peaks"]["bucket_s"];
  for (size_t i = 0; i < devices.size(); ++i) {
    const std::string name = devices[i]["name"];
    Series allocated{name + " allocated", kDeviceColors[i % std::size(kDeviceColors)], false, {}};
    // A step line: each busy bucket rises to its peak and leaves at its last level.
    double level = 0;
    for (const json& point : profile["allocation_peaks"]["devices"][i]) {
      const double t = point[0];
      allocated.points.emplace_back(t, level);
      allocated.points.emplace_back(t, point[1].get<double>());
      level = point[2];
      allocated.points.emplace_back(t + bucket, level);
    }
    allocated.points.emplace_back(duration, level);
    series.push_back(std::move(allocated));
  }
  // The host's memory used by all processes would dwarf this process's RSS, so only GPUs get this line.
  for (size_t i = 0; i < devices.size(); ++i) {
    if (devices[i]["name"] == "cpu") continue;
    Series used{devices[i]["name"].get<std::string>() + " used by all",
                kDeviceColors[i % std::size(kDeviceColors)],
                true,
                {}};
    for (const json& sample : profile["samples"]) {
      const json& device = sample["devices"][i];
      if (device.contains("free")) {
        used.points.emplace_back(sample["t"], device["total"].get<double>() - device["free"].get<double>());
      }
    }
    if (!used.points.empty()) series.push_back(std::move(used));
  }
  Series rss{"host RSS", "#ff7f0e", false, {}};
  for (const json& sample : profile["samples"]) rss.points.emplace_back(sample["t"], sample["host_rss"]);
  series.push_back(std::move(rss));
  return series;
}

void draw_axes(std::string& svg, const Scale& scale) {
  const double y_step = tick_step(scale.top_bytes / kGiB, 5);
  for (double value = 0; value <= scale.top_bytes / kGiB + y_step * 1e-6; value += y_step) {
    const double y = scale.y(value * kGiB);
    svg += format("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", kLeft, y,
                  kRight, y);
    svg += format("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", kLeft - 6, y + 4,
                  tick_label(value, y_step).c_str());
  }
  const double x_step = tick_step(scale.duration, 10);
  for (double t = 0; t <= scale.duration + x_step * 1e-6; t += x_step) {
    const double x = scale.x(t);
    svg += format("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\"/>\n", x, kBottom, x,
                  kBottom + 4);
    svg += format("<text x=\"%.1f\" y=\"452\" text-anchor=\"middle\">%s</text>\n", x,
                  tick_label(t, x_step).c_str());
  }
  svg +=
      format("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n",
             kLeft, kTop, kRight - kLeft, kBottom - kTop);
  svg += format("<text x=\"%.1f\" y=\"476\" text-anchor=\"middle\">time (s)</text>\n", (kLeft + kRight) / 2);
  svg += format("<text transform=\"translate(20 %.1f) rotate(-90)\" text-anchor=\"middle\">GiB</text>\n",
                (kTop + kBottom) / 2);
}

// Top-level phases as alternating bands, each label clipped to its band.
void draw_phases(std::string& svg, const json& phases, const Scale& scale) {
  int index = 0;
  for (const json& phase : phases) {
    if (phase["depth"] != 0) continue;
    const double start = phase["start"], end = phase["end"];
    const double x = scale.x(start), width = std::max(scale.x(end) - x, 0.5);
    const std::string name = xml_escape(phase["name"].get<std::string>());
    svg += format(
        "<clipPath id=\"phase%d\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath>\n",
        index, x, kTop, width, kBottom - kTop);
    svg += format("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">", x, kTop, width,
                  kBottom - kTop, index % 2 ? "#eef2f8" : "#f6f6f6");
    svg += "<title>" + name + format(" (%.2f s)</title></rect>\n", end - start);
    svg += format("<text x=\"%.1f\" y=\"%.1f\" clip-path=\"url(#phase%d)\" fill=\"#555\">", x + 3, kTop + 14,
                  index);
    svg += name + "</text>\n";
    ++index;
  }
}

// The "copy" and "compute" lanes; intervals closer than half a pixel are drawn as one mark.
void draw_lanes(std::string& svg, const json& intervals, const Scale& scale) {
  const char* lanes[] = {"copy", "compute"};
  const char* colors[] = {"#8c564b", "#17becf"};
  for (int lane = 0; lane < 2; ++lane) {
    const double top = kFirstLaneTop + lane * kLaneGap;
    svg += format("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"10\">%s</text>\n", kLeft - 6,
                  top + 9, lanes[lane]);
    std::vector<std::pair<double, double>> marks;
    for (const json& interval : intervals) {
      if (interval["lane"] != lanes[lane]) continue;
      const double x = scale.x(interval["start"]);
      marks.emplace_back(x, std::max(scale.x(interval["end"]), x + 1));
    }
    std::sort(marks.begin(), marks.end());
    std::vector<std::pair<double, double>> merged;
    for (const auto& mark : marks) {
      if (!merged.empty() && mark.first <= merged.back().second + 0.5) {
        merged.back().second = std::max(merged.back().second, mark.second);
      } else {
        merged.push_back(mark);
      }
    }
    for (const auto& [x0, x1] : merged) {
      svg += format("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", x0, top,
                    x1 - x0, kLaneHeight, colors[lane]);
    }
  }
}

// Events as dashed red lines across the plot, named in a tooltip.
void draw_events(std::string& svg, const json& events, const Scale& scale) {
  for (const json& event : events) {
    const double x = scale.x(event["t"]);
    svg += format(
               "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#d62728\" "
               "stroke-dasharray=\"3 3\"><title>",
               x, kTop, x, kBottom) +
           xml_escape(event["name"].get<std::string>()) + "</title></line>\n";
  }
}

void draw_legend(std::string& svg, const std::vector<Series>& series) {
  constexpr double kCharWidth = 6.5, kSwatch = 22, kPadding = 14;
  double width = 0;
  for (const Series& line : series) width += kSwatch + 4 + kCharWidth * line.label.size() + kPadding;
  double x = kRight - width;
  for (const Series& line : series) {
    svg += format("<line x1=\"%.1f\" y1=\"20\" x2=\"%.1f\" y2=\"20\" stroke=\"%s\" stroke-width=\"2\"%s/>\n",
                  x, x + kSwatch, line.color.c_str(), line.dashed ? " stroke-dasharray=\"5 3\"" : "");
    svg += format("<text x=\"%.1f\" y=\"24\">", x + kSwatch + 4) + xml_escape(line.label) + "</text>\n";
    x += kSwatch + 4 + kCharWidth * line.label.size() + kPadding;
  }
}

}  // namespace

std::string render_profile_svg(const json& profile) {
  double duration = profile["duration_s"];
  for (const json& interval : profile["intervals"])
    duration = std::max(duration, interval["end"].get<double>());
  duration = std::max(duration, 1e-3);
  const std::vector<Series> series = memory_series(profile, duration);
  double top_bytes = 1024.0 * 1024.0;
  for (const Series& line : series) {
    for (const auto& point : line.points) top_bytes = std::max(top_bytes, point.second);
  }
  // Headroom keeps the highest line clear of the phase labels.
  top_bytes *= 1.1;
  const double y_step = tick_step(top_bytes / kGiB, 5) * kGiB;
  const Scale scale{duration, std::ceil(top_bytes / y_step) * y_step};

  std::string svg = format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n",
      kWidth, kHeight, kWidth, kHeight);
  svg += format("<rect width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", kWidth, kHeight);
  svg += format("<text x=\"%.1f\" y=\"24\" font-size=\"14\">canvas profile, %.2f s</text>\n", kLeft,
                profile["duration_s"].get<double>());
  draw_phases(svg, profile["phases"], scale);
  draw_axes(svg, scale);
  for (const Series& line : series) {
    svg += format("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s points=\"",
                  line.color.c_str(), line.dashed ? " stroke-dasharray=\"5 3\"" : "");
    svg += polyline_points(line, scale) + "\"/>\n";
  }
  draw_lanes(svg, profile["intervals"], scale);
  draw_events(svg, profile.value("events", json::array()), scale);
  draw_legend(svg, series);
  return svg + "</svg>\n";
}

}  // namespace canvas
