package services

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestServiceValidate(t *testing.T) {
	ok := Service{Instance: "Community panel", Type: "_http._tcp", Port: 80}
	manyTXT := map[string]string{}
	for i := range MaxTXTKeys + 1 {
		manyTXT[string(rune('a'+i%26))+strings.Repeat("x", i/26)] = "v"
	}
	bigTXT := map[string]string{}
	for i := range 6 {
		bigTXT[string(rune('a'+i))] = strings.Repeat("v", 250)
	}
	tests := []struct {
		name    string
		mod     func(*Service)
		wantErr string // substring; "" = valid
	}{
		{"valid", func(*Service) {}, ""},
		{"udp", func(s *Service) { s.Type = "_sip._udp" }, ""},
		{"utf8 instance", func(s *Service) { s.Instance = "Ràdio Comunitària ☺" }, ""},
		{"63 bytes", func(s *Service) { s.Instance = strings.Repeat("a", 63) }, ""},
		{"lan printer", func(s *Service) { s.Addr = netip.MustParseAddr("198.51.100.7"); s.Type = "_ipp._tcp" }, ""},
		{"txt", func(s *Service) { s.TXT = map[string]string{"path": "/", "empty": ""} }, ""},
		{"empty instance", func(s *Service) { s.Instance = "" }, "instance name is empty"},
		{"64 bytes", func(s *Service) { s.Instance = strings.Repeat("a", 64) }, "at most 63"},
		{"control char", func(s *Service) { s.Instance = "a\nb" }, "control character"},
		{"bad utf8", func(s *Service) { s.Instance = "a\xffb" }, "UTF-8"},
		{"no underscore", func(s *Service) { s.Type = "http._tcp" }, "_name._tcp"},
		{"bad proto", func(s *Service) { s.Type = "_http._sctp" }, "_name._tcp"},
		{"long name", func(s *Service) { s.Type = "_abcdefghijklmnop._tcp" }, "1 to 15"},
		{"empty name", func(s *Service) { s.Type = "_._tcp" }, "1 to 15"},
		{"digits only", func(s *Service) { s.Type = "_123._tcp" }, "at least one letter"},
		{"leading hyphen", func(s *Service) { s.Type = "_-ab._tcp" }, "hyphens"},
		{"double hyphen", func(s *Service) { s.Type = "_a--b._tcp" }, "hyphens"},
		{"bad char", func(s *Service) { s.Type = "_a_b._tcp" }, "letters, digits"},
		{"no port", func(s *Service) { s.Port = 0 }, "port is missing"},
		{"txt key long", func(s *Service) { s.TXT = map[string]string{"abcdefghij": "v"} }, "1 to 9"},
		{"txt key eq", func(s *Service) { s.TXT = map[string]string{"a=b": "v"} }, "other than '='"},
		{"txt key case dup", func(s *Service) { s.TXT = map[string]string{"Path": "a", "path": "b"} }, "twice"},
		{"txt pair long", func(s *Service) { s.TXT = map[string]string{"k": strings.Repeat("v", 254)} }, "at most 255"},
		{"txt many", func(s *Service) { s.TXT = manyTXT }, "TXT attributes: keep at most"},
		{"txt total", func(s *Service) { s.TXT = bigTXT }, "under 1300"},
		{"description long", func(s *Service) { s.Description = strings.Repeat("d", 257) }, "description is 257"},
		{"description control", func(s *Service) { s.Description = "a\x00" }, "control character"},
		{"unspecified addr", func(s *Service) { s.Addr = netip.IPv4Unspecified() }, "cannot be a service address"},
		{"multicast addr", func(s *Service) { s.Addr = netip.MustParseAddr("ff02::fb") }, "cannot be a service address"},
		{"zone", func(s *Service) { s.Addr = netip.MustParseAddr("fe80::1%eth0") }, "zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.mod(&s)
			err := s.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidService) {
				t.Fatalf("Validate() = %v, want ErrInvalidService containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	r := Record{Service: Service{Type: "_http._tcp"}, OwnerID: "node001", OwnerName: "box1", Healthy: true}
	tests := []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{Type: "_HTTP._tcp"}, true},
		{Filter{Type: "_ipp._tcp"}, false},
		{Filter{Owner: "node001"}, true},
		{Filter{Owner: "box1"}, true},
		{Filter{Owner: "box2"}, false},
		{Filter{Health: "healthy"}, true},
		{Filter{Health: "unhealthy"}, false},
	}
	for _, tt := range tests {
		if got := tt.f.match(&r); got != tt.want {
			t.Errorf("%+v.match = %v, want %v", tt.f, got, tt.want)
		}
	}
}
