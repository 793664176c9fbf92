package migration

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		files   []string
		want    []int
		wantErr string
	}{
		{"in order", []string{"m/0002_b.sql", "m/0001_a.sql"}, []int{1, 2}, ""},
		{"none", nil, []int{}, ""},
		{"a gap", []string{"m/0001_a.sql", "m/0003_c.sql"}, nil, "want the name 0002_description.sql"},
		{"no number", []string{"m/init.sql"}, nil, "want the name 0001_description.sql"},
		{"other files ignored", []string{"m/0001_a.sql", "m/README.md"}, []int{1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tt.files {
				fsys[f] = &fstest.MapFile{Data: []byte("-- " + f)}
			}
			ms, err := Load(fsys, "m")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != len(tt.want) {
				t.Fatalf("got %d migrations, want %d", len(ms), len(tt.want))
			}
			for i, m := range ms {
				if m.Version != tt.want[i] || !strings.HasSuffix(m.SQL, m.Name) {
					t.Errorf("migration %d: got version %d name %q sql %q", i, m.Version, m.Name, m.SQL)
				}
			}
		})
	}
}
