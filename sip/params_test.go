package sip

import (
	"slices"
	"strings"
	"testing"
)

func TestParamsGet(t *testing.T) {
	tests := []struct {
		name   string
		params Params
		key    string
		value  string
		ok     bool
	}{
		{"RFC3261 20.42 value", ";branch=z9hG4bK776asdhds;rport", "branch", "z9hG4bK776asdhds", true},
		{"RFC3581 3 flag without value", ";branch=z9hG4bK776asdhds;rport", "rport", "", true},
		{"RFC3261 7.3.1 names are case-insensitive", ";Branch=z9hG4bKx", "bRANCH", "z9hG4bKx", true},
		{"RFC3261 7.3.1 values keep their case", ";tag=AbC", "tag", "AbC", true},
		{"RFC3261 25.1 absent", ";lr", "transport", "", false},
		{"RFC3261 25.1 empty list", "", "lr", "", false},
		{"RFC3261 25.1 quoted value keeps its quotes", `;x="a b"`, "x", `"a b"`, true},
		{"RFC3261 25.1 quoted value containing a semicolon", `;x="a;b=c";y=1`, "x", `"a;b=c"`, true},
		{"RFC3261 25.1 parameter after a quoted semicolon", `;x="a;y=2";y=1`, "y", "1", true},
		{"RFC3261 25.1 quoted escaped quote", `;x="a\";y=2";y=1`, "y", "1", true},
		{"RFC5626 4.2 quoted instance id with angle brackets", `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`,
			"+sip.instance", `"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"`, true},
		{"RFC3261 25.1 first of two wins", ";a=1;a=2", "a", "1", true},
		{"RFC3261 19.1.1 URI parameters keep escapes", ";n%61me=v%61lue", "n%61me", "v%61lue", true},
		{"RFC3261 25.1 value containing equals", ";a=b=c", "a", "b=c", true},
		{"RFC5118 4.5 IPv6 received without brackets", ";received=2001:db8::9:255;branch=z9hG4bKas3", "received", "2001:db8::9:255", true},
		{"doubled and trailing semicolons are no parameters", ";;a=1;;", "", "", false},
		{"doubled semicolons are skipped", ";;a=1;;b", "b", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := tt.params.Get(tt.key)
			if v != tt.value || ok != tt.ok {
				t.Errorf("%q.Get(%q) = %q, %v; want %q, %v", tt.params, tt.key, v, ok, tt.value, tt.ok)
			}
			if has := tt.params.Has(tt.key); has != tt.ok {
				t.Errorf("%q.Has(%q) = %v, want %v", tt.params, tt.key, has, tt.ok)
			}
		})
	}
}

func TestParamsSet(t *testing.T) {
	tests := []struct {
		name   string
		params Params
		key    string
		value  string
		want   Params
	}{
		{"RFC3261 18.2.1 add received", ";branch=z9hG4bKx", "received", "192.0.2.1", ";branch=z9hG4bKx;received=192.0.2.1"},
		{"RFC3581 4 fill in rport in place", ";rport;branch=z9hG4bKx", "rport", "5061", ";rport=5061;branch=z9hG4bKx"},
		{"RFC3261 7.3.1 replace ignoring name case", ";TAG=1;x", "tag", "2", ";tag=2;x"},
		{"RFC3261 19.1.1 flag", "", "lr", "", ";lr"},
		{"RFC3261 25.1 replace keeps quoted neighbours", `;x="a;b";y=1`, "y", "2", `;x="a;b";y=2`},
		{"RFC3261 25.1 only the first duplicate is replaced", ";a=1;a=2", "a", "3", ";a=3;a=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.params.Set(tt.key, tt.value); got != tt.want {
				t.Errorf("%q.Set(%q, %q) = %q, want %q", tt.params, tt.key, tt.value, got, tt.want)
			}
		})
	}
}

func TestParamsDel(t *testing.T) {
	tests := []struct {
		name   string
		params Params
		key    string
		want   Params
	}{
		{"RFC3261 16.4 remove lr", ";transport=tcp;lr", "lr", ";transport=tcp"},
		{"RFC3261 7.3.1 names are case-insensitive", ";Maddr=x;ttl=1", "MADDR", ";ttl=1"},
		{"RFC3261 25.1 every duplicate goes", ";a=1;b;a=2", "a", ";b"},
		{"RFC3261 25.1 absent is unchanged", ";a=1", "b", ";a=1"},
		{"RFC3261 25.1 last one leaves an empty list", ";lr", "lr", ""},
		{"RFC3261 25.1 quoted semicolon survives", `;x="a;lr";lr`, "lr", `;x="a;lr"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.params.Del(tt.key); got != tt.want {
				t.Errorf("%q.Del(%q) = %q, want %q", tt.params, tt.key, got, tt.want)
			}
		})
	}
}

func TestParamsEach(t *testing.T) {
	type param struct {
		name, value string
		has         bool
	}
	tests := []struct {
		name   string
		params Params
		want   []param
	}{
		{"RFC3261 25.1 empty", "", nil},
		{"RFC3261 20.42 Via parameters in order", ";branch=z9hG4bKx;rport;received=192.0.2.1",
			[]param{{"branch", "z9hG4bKx", true}, {"rport", "", false}, {"received", "192.0.2.1", true}}},
		{"RFC3261 25.1 quoted value with semicolon and equals", `;a="x;y=z";b`,
			[]param{{"a", `"x;y=z"`, true}, {"b", "", false}}},
		{"RFC3261 25.1 names keep their case", ";Tag=A", []param{{"Tag", "A", true}}},
		{"RFC3261 25.1 empty value differs from no value", ";a=;b", []param{{"a", "", true}, {"b", "", false}}},
		{"doubled and trailing semicolons are skipped", ";;a;;b=1;", []param{{"a", "", false}, {"b", "1", true}}},
		{"semicolons only", ";;", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []param
			tt.params.Each(func(name, value string, has bool) bool {
				got = append(got, param{name, value, has})
				return true
			})
			if !slices.Equal(got, tt.want) {
				t.Errorf("%q.Each: got %v, want %v", tt.params, got, tt.want)
			}
		})
	}
	t.Run("stops when fn returns false", func(t *testing.T) {
		n := 0
		Params(";a;b;c").Each(func(string, string, bool) bool {
			n++
			return n < 2
		})
		if n != 2 {
			t.Errorf("Each called fn %d times, want 2", n)
		}
	})
}

// TestParseHeaderParams covers generic-param lists of header fields as the
// parser reads them: LWS around ";" and "=" is removed, bad lists rejected.
func TestParseHeaderParams(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Params
		wantErr bool
	}{
		{"RFC3261 25.1 plain", ";tag=1918181833n", ";tag=1918181833n", false},
		{"RFC4475 3.1.1.1 LWS around separators", ";   tag    = 1918181833n", ";tag=1918181833n", false},
		{"RFC4475 3.1.1.1 LWS everywhere", " ; newparam = newvalue ;  secondparam ; q = 0.33", ";newparam=newvalue;secondparam;q=0.33", false},
		{"RFC3261 25.1 quoted string with LWS inside", `; x = "a b"`, `;x="a b"`, false},
		{"RFC3261 25.1 quoted string with semicolon and comma", `;x="a;b,c"`, `;x="a;b,c"`, false},
		{"RFC5118 4.5 bracketed IPv6 received", ";received=[2001:db8::9:255]", ";received=[2001:db8::9:255]", false},
		{"RFC4475 3.1.2.1 empty parameters", ";;;;", "", true},
		{"RFC4475 3.1.2.1 trailing semicolon", ";tag=1;", "", true},
		{"RFC4475 3.1.2.1 trailing semicolon after LWS", ";tag=1 ; ", "", true},
		{"RFC3261 25.1 empty value", ";tag=", "", true},
		{"RFC3261 25.1 empty name", ";=1", "", true},
		{"RFC3261 25.1 name is not a token", ";t@g=1", "", true},
		{"RFC3261 25.1 unquoted value with space", ";x=a b", "", true},
		{"RFC3261 25.1 unquoted value with comma", ";x=a,b", "", true},
		{"RFC3261 25.1 unterminated quoted value", `;x="abc`, "", true},
		{"RFC3261 25.1 junk after a quoted value", `;x="a"b`, "", true},
		{"RFC3261 25.1 no leading semicolon", "tag=1", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHeaderParams(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseHeaderParams(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseHeaderParams(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzParamsGet checks Get, which walks the list itself, against the first
// match Each reports.
func FuzzParamsGet(f *testing.F) {
	f.Add(";branch=z9hG4bK776asdhds;rport", "rport")
	f.Add(`;x="a;y=2";y=1`, "y")
	f.Add(";;a=b=c;;", "")
	f.Add(`;x="unterminated;y`, "Y")
	f.Fuzz(func(t *testing.T, params, name string) {
		p := Params(params)
		var want string
		found := false
		p.Each(func(n, v string, _ bool) bool {
			if strings.EqualFold(n, name) {
				want, found = v, true
				return false
			}
			return true
		})
		if v, ok := p.Get(name); v != want || ok != found {
			t.Fatalf("%q.Get(%q) = %q, %v; Each finds %q, %v", params, name, v, ok, want, found)
		}
	})
}

// BenchmarkParamsGet looks up the parameters a server reads of every
// message: the Via's branch and rport, a tag, an absent one.
func BenchmarkParamsGet(b *testing.B) {
	cases := []struct {
		p    Params
		name string
	}{
		{";branch=z9hG4bK776asdhds;rport", "branch"},
		{";branch=z9hG4bK776asdhds;rport", "rport"},
		{";branch=z9hG4bK776asdhds;rport;received=192.0.2.1", "maddr"},
		{";tag=1928301774", "tag"},
		{`;expires=3600;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`, "reg-id"},
	}
	for b.Loop() {
		for _, c := range cases {
			c.p.Get(c.name)
		}
	}
}

// AppendSet and AppendDel write after what the buffer holds (Set and Del,
// built on them, are pinned by TestParamsSet and TestParamsDel).
func TestParamsAppendSetDel(t *testing.T) {
	for _, c := range []struct {
		p        Params
		set, del string
	}{
		{"", ";expires=60", ""},
		{";a;;expires=1;b", ";a;expires=60;b", ";a;b"},
		{"x;expires=1", ";x;expires=60", ";x"},
		{";EXPIRES=2;expires=3", ";expires=60;expires=3", ""},
		{";lr;expires", ";lr;expires=60", ";lr"},
		{`;q=0.5;+sip.instance="<urn:uuid:1;expires=2>";expires=9`, `;q=0.5;+sip.instance="<urn:uuid:1;expires=2>";expires=60`, `;q=0.5;+sip.instance="<urn:uuid:1;expires=2>"`},
		{";a;b", ";a;b;expires=60", ";a;b"},
	} {
		if got := string(c.p.AppendSet([]byte("<sip:x>"), "expires", "60")); got != "<sip:x>"+c.set {
			t.Errorf("%q.AppendSet = %q, want %q", c.p, got, "<sip:x>"+c.set)
		}
		if got := string(c.p.AppendDel([]byte("<sip:x>"), "expires")); got != "<sip:x>"+c.del {
			t.Errorf("%q.AppendDel = %q, want %q", c.p, got, "<sip:x>"+c.del)
		}
	}
}
