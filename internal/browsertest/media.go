package browsertest

import (
	"context"
	"fmt"
)

// FakeCameraAndMicrophone is a script that replaces getUserMedia with a
// generated tone and, when video is asked for, a moving test picture drawn
// on a canvas (640x360, 15 frames a second). The page needs a user
// activation (Click) before its audio runs.
const FakeCameraAndMicrophone = `navigator.mediaDevices.getUserMedia = async (c) => {
  const ac = new AudioContext(); const o = ac.createOscillator(); const d = ac.createMediaStreamDestination();
  o.connect(d); o.start(); const s = d.stream;
  if (c && c.video) {
    const cv = document.createElement('canvas'); cv.width = 640; cv.height = 360; const g = cv.getContext('2d'); let n = 0;
    setInterval(() => { n++; g.fillStyle = 'hsl(' + (n * 7 % 360) + ',70%,50%)'; g.fillRect(0, 0, 640, 360);
      g.fillStyle = '#fff'; g.fillRect((n * 9) % 600, 150, 40, 40); }, 66);
    cv.captureStream(15).getVideoTracks().forEach((t) => s.addTrack(t));
  }
  return s; }; true`

// Click clicks the element matching the CSS selector as a person would
// (mouse events through CDP), which gives the page a user activation:
// audio may start, unlike after a scripted click().
func (p *Page) Click(ctx context.Context, selector string) error {
	var xy []float64
	if err := p.Eval(ctx, fmt.Sprintf(`(() => { const r = document.querySelector(%q).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`, selector), &xy); err != nil || len(xy) != 2 {
		return fmt.Errorf("finding %s: %v", selector, err)
	}
	for _, typ := range []string{"mousePressed", "mouseReleased"} {
		if err := p.Call(ctx, "Input.dispatchMouseEvent", map[string]any{"type": typ, "x": xy[0], "y": xy[1], "button": "left", "clickCount": 1}, nil); err != nil {
			return fmt.Errorf("clicking %s: %w", selector, err)
		}
	}
	return nil
}
