package browsertest

import (
	"context"
	"fmt"
)

// FakeMicrophone is a script that replaces getUserMedia with a generated
// tone (headless Chromium has no microphone). The page needs a user
// activation (Click) before its audio runs.
const FakeMicrophone = `navigator.mediaDevices.getUserMedia = async () => {
  const ac = new AudioContext(); const o = ac.createOscillator(); const d = ac.createMediaStreamDestination();
  o.connect(d); o.start(); return d.stream; }; true`

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
