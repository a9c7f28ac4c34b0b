package stream

import (
	"testing"
)

func TestKeyframeStart(t *testing.T) {
	for _, tc := range []struct {
		name, mime string
		payload    []byte
		want       bool
	}{
		{"vp8 key", mimeVP8, []byte{0x10, 0x10, 0x02}, true},
		{"vp8 delta", mimeVP8, []byte{0x10, 0x11}, false},
		{"vp8 continuation", mimeVP8, []byte{0x00, 0x10}, false},
		{"vp8 key with 15-bit picture id", mimeVP8, []byte{0x90, 0x80, 0x81, 0x23, 0x10}, true},
		{"vp8 delta with 7-bit picture id", mimeVP8, []byte{0x90, 0x80, 0x05, 0x01}, false},
		{"vp8 key with all extensions", mimeVP8, []byte{0x90, 0xf0, 0x05, 0x01, 0x02, 0x50}, true},
		{"vp8 truncated", mimeVP8, []byte{0x90, 0x80}, false},
		{"vp8 empty", mimeVP8, nil, false},
		{"h264 idr", mimeH264, []byte{0x65, 0x88}, true},
		{"h264 sps", mimeH264, []byte{0x67, 0x42}, true},
		{"h264 non-idr slice", mimeH264, []byte{0x41, 0x9a}, false},
		{"h264 stap-a sps pps", mimeH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"h264 stap-a truncated", mimeH264, []byte{0x78, 0x00, 0x09, 0x67}, false},
		{"h264 fu-a idr start", mimeH264, []byte{0x7c, 0x85, 0x88}, true},
		{"h264 fu-a idr middle", mimeH264, []byte{0x7c, 0x05, 0x88}, false},
		{"opus", mimeOpus, []byte{0xfc}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isKeyframeStart(tc.mime, tc.payload); got != tc.want {
				t.Errorf("isKeyframeStart(%s, % x) = %v, want %v", tc.mime, tc.payload, got, tc.want)
			}
		})
	}
}

func TestH264SliceType(t *testing.T) {
	// first_mb_in_slice = 0 ("1"), slice_type as ue(v): 0 (P) "1",
	// 1 (B) "010", 2 (I) "011", 6 (B) "00111", 7 (I) "0001000".
	for _, tc := range []struct {
		name    string
		payload []byte
		want    int
		ok      bool
	}{
		{"P slice", []byte{0x41, 0b1_1_000000}, 0, true},
		{"B slice", []byte{0x01, 0b1_010_0000}, 1, true},
		{"I slice in IDR", []byte{0x65, 0b1_011_0000}, 2, true},
		{"B slice type 6", []byte{0x01, 0b1_00111_00}, 6, true},
		{"I slice type 7", []byte{0x65, 0b1_0001000}, 7, true},
		{"B in fu-a start", []byte{0x7c, 0x81, 0b1_010_0000}, 1, true},
		{"fu-a middle", []byte{0x7c, 0x01, 0b1_010_0000}, 0, false},
		{"B in stap-a", []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x01, 0b1_010_0000}, 1, true},
		{"sps", []byte{0x67, 0x42}, 0, false},
		{"truncated", []byte{0x41, 0x00}, 0, false},
		{"emulation prevention", []byte{0x41, 0x00, 0x00, 0x03, 0x01, 0x80}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := h264SliceType(tc.payload)
			if got != tc.want || ok != tc.ok {
				t.Errorf("h264SliceType(% x) = %d, %v, want %d, %v", tc.payload, got, ok, tc.want, tc.ok)
			}
		})
	}
	if !isBSlice(1) || !isBSlice(6) || isBSlice(0) || isBSlice(7) {
		t.Error("isBSlice wrong")
	}
}

func TestUnescapeRBSP(t *testing.T) {
	got := unescapeRBSP([]byte{0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x03, 0x00, 0x05}, 64)
	want := []byte{0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05}
	if string(got) != string(want) {
		t.Errorf("unescapeRBSP = % x, want % x", got, want)
	}
}

func FuzzKeyframe(f *testing.F) {
	for _, seed := range [][]byte{{0x10, 0x10}, {0x90, 0xf0, 0x05, 0x01, 0x02, 0x50}, {0x78, 0x00, 0x02, 0x67, 0x42},
		{0x7c, 0x85, 0x88}, {0x01, 0b1_010_0000}, {0x7c, 0x81, 0b1_010_0000}, {0x41, 0x00, 0x00, 0x03, 0x01, 0x80}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		isKeyframeStart(mimeVP8, p)
		isKeyframeStart(mimeH264, p)
		if st, ok := h264SliceType(p); ok && (st < 0 || st > 1<<32) {
			t.Fatalf("slice type %d", st)
		}
	})
}

func FuzzCheckOffer(f *testing.F) {
	f.Add(aacOffer, true)
	f.Add("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\na=recvonly\r\n", false)
	f.Add("v=0\r\n", false)
	f.Fuzz(func(t *testing.T, offer string, publish bool) {
		sum, err := checkOffer(offer, publish)
		if err == nil && sum.audio+sum.video == 0 {
			t.Fatal("accepted an offer without usable media")
		}
		if err != nil && StatusOf(err)/100 != 4 {
			t.Fatalf("error %v maps to %d, want 4xx", err, StatusOf(err))
		}
		countSections(offer, "sendonly")
	})
}
