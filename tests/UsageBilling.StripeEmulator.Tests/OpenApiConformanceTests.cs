using System.Net;
using System.Text.Json;


namespace UsageBilling.StripeEmulator.Tests;

/// <summary>Checks the meter endpoints' parameters and response objects against Spec/openapi-billing-meters.json, a vendored subset of Stripe's published OpenAPI spec.</summary>
public sealed class OpenApiConformanceTests
{
    private static readonly Lazy<JsonDocument> Spec = new(() =>
    {
        // Vendored in Spec/ (see Spec/README.md for its source) and copied next to the test binaries.
        var path = Path.Combine(AppContext.BaseDirectory, "Spec", "openapi-billing-meters.json");
        Assert.True(File.Exists(path), $"OpenAPI spec not found at {path}");
        return JsonDocument.Parse(File.ReadAllText(path));
    });

    private static JsonElement Paths => Spec.Value.RootElement.GetProperty("paths");

    public static TheoryData<string, string> Operations()
    {
        var data = new TheoryData<string, string>();
        foreach (var path in Paths.EnumerateObject())
        {
            foreach (var op in path.Value.EnumerateObject())
            {
                data.Add(op.Name, path.Name);
            }
        }

        return data;
    }

    [Fact]
    public void Spec_CoversTheSevenMeterPaths()
    {
        Assert.Equal(7, Paths.EnumerateObject().Count());
        Assert.Equal(9, Operations().Count);
    }

    /// <summary>Every documented parameter is understood (never parameter_unknown), anything else is rejected, required ones are enforced, enums are checked.</summary>
    [Theory]
    [MemberData(nameof(Operations))]
    public async Task Parameters_MatchSpec(string method, string template)
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = Emu.Raw(server);
        var meter = await Emu.MeterAsync(Emu.Client(server));
        var path = template.Replace("{id}", meter.Id, StringComparison.Ordinal);
        var op = Paths.GetProperty(template).GetProperty(method);
        var parameters = ParametersOf(op).ToList();
        Assert.NotEmpty(parameters);

        foreach (var (name, schema, _) in parameters)
        {
            var body = await SendAsync(http, method, path, Encode(name, schema));
            Assert.False(Code(body) == "parameter_unknown", $"{method} {template}: documented parameter '{name}' was rejected as unknown: {body}");
        }

        var unknown = await SendAsync(http, method, path, [("zz_not_in_spec", "1")]);
        Assert.Equal("parameter_unknown", Code(unknown));

        var required = parameters.Where(p => p.Required).Select(p => p.Name).ToHashSet();
        if (required.Count > 0)
        {
            var missing = await SendAsync(http, method, path, []);
            Assert.Equal("parameter_missing", Code(missing));
            Assert.Contains(Param(missing)!.Split('[')[0], required);
        }

        foreach (var (name, schema, _) in parameters)
        {
            foreach (var (key, enumSchema) in Leaves(name, schema).Where(l => l.Schema.TryGetProperty("enum", out _)))
            {
                var others = parameters.Where(p => p.Required && p.Name != name).SelectMany(p => Encode(p.Name, p.Schema));
                var pairs = others.Concat(Encode(name, schema).Where(p => p.Key != key)).Append((key, "not_a_valid_value")).ToList();
                var body = await SendAsync(http, method, path, pairs);
                Assert.True(Param(body) == key, $"{method} {template}: invalid enum value for '{key}' not reported on that param: {body}");
            }
        }
    }

    /// <summary>Real responses of every meter operation conform to the response schema: required fields, types, enums, nullability, no undocumented fields.</summary>
    [Fact]
    public async Task Responses_MatchSpec()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        using var http = Emu.Raw(server);
        var cus = await Emu.CustomerAsync(c);
        time.Advance(TimeSpan.FromHours(2));

        var created = await PostAsync(http, "/v1/billing/meters",
            ("display_name", "Msgs"), ("event_name", "msgs"), ("default_aggregation[formula]", "sum"), ("event_time_window", "hour"));
        Validate("post", "/v1/billing/meters", created);
        var id = created.GetProperty("id").GetString()!;
        Validate("get", "/v1/billing/meters/{id}", await GetAsync(http, $"/v1/billing/meters/{id}"));
        Validate("post", "/v1/billing/meters/{id}", await PostAsync(http, $"/v1/billing/meters/{id}", ("display_name", "Messages")));
        Validate("post", "/v1/billing/meter_events", await PostAsync(http, "/v1/billing/meter_events",
            ("event_name", "msgs"), ("payload[stripe_customer_id]", cus.Id), ("payload[value]", "3"), ("identifier", "conf-1"), ("timestamp", Emu.T0.AddMinutes(10).ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture))));
        Validate("post", "/v1/billing/meter_event_adjustments", await PostAsync(http, "/v1/billing/meter_event_adjustments",
            ("event_name", "msgs"), ("type", "cancel"), ("cancel[identifier]", "conf-1")));
        Validate("get", "/v1/billing/meters/{id}/event_summaries", await GetAsync(http,
            $"/v1/billing/meters/{id}/event_summaries?customer={cus.Id}&start_time={Emu.T0.ToUnixTimeSeconds()}&end_time={Emu.T0.AddHours(2).ToUnixTimeSeconds()}&value_grouping_window=hour"));
        Validate("post", "/v1/billing/meters/{id}/deactivate", await PostAsync(http, $"/v1/billing/meters/{id}/deactivate"));
        Validate("get", "/v1/billing/meters", await GetAsync(http, "/v1/billing/meters?status=inactive"));
        Validate("post", "/v1/billing/meters/{id}/reactivate", await PostAsync(http, $"/v1/billing/meters/{id}/reactivate"));
        Validate("get", "/v1/billing/meters", await GetAsync(http, "/v1/billing/meters"));
    }

    [Fact]
    public void Validator_ReportsMissingWrongTypedAndUndocumentedFields()
    {
        var bad = JsonDocument.Parse("""
            {"object":"billing.meter_event","created":"yesterday","event_name":"x","livemode":false,"payload":{},"timestamp":1,"extra":1}
            """).RootElement;
        var errors = new List<string>();

        Check(Paths.GetProperty("/v1/billing/meter_events").GetProperty("post").GetProperty("responses").GetProperty("200")
            .GetProperty("content").GetProperty("application/json").GetProperty("schema"), bad, "$", errors);

        Assert.Contains("$: missing required 'identifier'", errors);
        Assert.Contains("$.created: expected integer, got String", errors);
        Assert.Contains("$: undocumented property 'extra'", errors);
    }

    // ------------------------------------------------------------------ spec helpers

    private static IEnumerable<(string Name, JsonElement Schema, bool Required)> ParametersOf(JsonElement op)
    {
        if (op.TryGetProperty("parameters", out var ps))
        {
            foreach (var p in ps.EnumerateArray().Where(p => p.GetProperty("in").GetString() == "query"))
            {
                yield return (p.GetProperty("name").GetString()!, p.GetProperty("schema"), p.TryGetProperty("required", out var r) && r.GetBoolean());
            }
        }

        if (op.TryGetProperty("requestBody", out var rb))
        {
            var schema = rb.GetProperty("content").GetProperty("application/x-www-form-urlencoded").GetProperty("schema");
            var required = schema.TryGetProperty("required", out var req) ? req.EnumerateArray().Select(x => x.GetString()).ToHashSet() : [];
            if (schema.TryGetProperty("properties", out var props))
            {
                foreach (var p in props.EnumerateObject())
                {
                    yield return (p.Name, p.Value, required.Contains(p.Name));
                }
            }
        }
    }

    /// <summary>Form keys and schemas of the scalar leaves under a parameter (deepObject style).</summary>
    private static IEnumerable<(string Key, JsonElement Schema)> Leaves(string key, JsonElement schema)
    {
        var type = schema.TryGetProperty("type", out var t) ? t.GetString() : "string";
        if (type == "object" && schema.TryGetProperty("properties", out var props))
        {
            foreach (var p in props.EnumerateObject())
            {
                foreach (var leaf in Leaves($"{key}[{p.Name}]", p.Value))
                {
                    yield return leaf;
                }
            }
        }
        else if (type == "object")
        {
            yield return ($"{key}[some_key]", schema.GetProperty("additionalProperties"));
        }
        else if (type == "array")
        {
            yield return ($"{key}[0]", schema.GetProperty("items"));
        }
        else
        {
            yield return (key, schema);
        }
    }

    private static List<(string Key, string Value)> Encode(string name, JsonElement schema) =>
        Leaves(name, schema).Select(l => (l.Key, Sample(l.Schema))).ToList();

    private static string Sample(JsonElement schema)
    {
        if (schema.TryGetProperty("enum", out var e))
        {
            return e[0].GetString()!;
        }

        return (schema.TryGetProperty("type", out var t) ? t.GetString() : "string") switch
        {
            "integer" => Emu.T0.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture),
            "boolean" => "true",
            _ => "x",
        };
    }

    private static async Task<string> SendAsync(HttpClient http, string method, string path, IEnumerable<(string Key, string Value)> pairs)
    {
        var list = pairs.ToList();
        HttpResponseMessage resp;
        if (method == "get")
        {
            var query = string.Join('&', list.Select(p => $"{Uri.EscapeDataString(p.Key)}={Uri.EscapeDataString(p.Value)}"));
            resp = await http.GetAsync(query.Length == 0 ? path : $"{path}?{query}", Emu.Ct);
        }
        else
        {
            resp = await http.PostAsync(path, Emu.Form([.. list]), Emu.Ct);
        }

        using (resp)
        {
            Assert.NotEqual(HttpStatusCode.InternalServerError, resp.StatusCode);
            return await resp.Content.ReadAsStringAsync(Emu.Ct);
        }
    }

    private static string? Code(string body) => ErrorField(body, "code");

    private static string? Param(string body) => ErrorField(body, "param");

    private static string? ErrorField(string body, string field)
    {
        using var doc = JsonDocument.Parse(body);
        return doc.RootElement.TryGetProperty("error", out var e) && e.TryGetProperty(field, out var v) ? v.GetString() : null;
    }

    private static async Task<JsonElement> PostAsync(HttpClient http, string path, params (string, string)[] form)
    {
        using var resp = await http.PostAsync(path, Emu.Form(form), Emu.Ct);
        var text = await resp.Content.ReadAsStringAsync(Emu.Ct);
        Assert.True(resp.IsSuccessStatusCode, $"POST {path}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static async Task<JsonElement> GetAsync(HttpClient http, string path)
    {
        using var resp = await http.GetAsync(path, Emu.Ct);
        var text = await resp.Content.ReadAsStringAsync(Emu.Ct);
        Assert.True(resp.IsSuccessStatusCode, $"GET {path}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static void Validate(string method, string template, JsonElement actual)
    {
        var schema = Paths.GetProperty(template).GetProperty(method).GetProperty("responses").GetProperty("200")
            .GetProperty("content").GetProperty("application/json").GetProperty("schema");
        var errors = new List<string>();
        Check(schema, actual, "$", errors);
        Assert.True(errors.Count == 0, $"{method.ToUpperInvariant()} {template}:\n" + string.Join('\n', errors));
    }

    private static JsonElement Resolve(JsonElement schema)
    {
        while (schema.TryGetProperty("$ref", out var r))
        {
            var name = r.GetString()!.Split('/')[^1];
            schema = Spec.Value.RootElement.GetProperty("components").GetProperty("schemas").GetProperty(name);
        }

        if (schema.TryGetProperty("anyOf", out var any) && any.GetArrayLength() == 1)
        {
            var nullable = schema.TryGetProperty("nullable", out var n) && n.GetBoolean();
            var inner = Resolve(any[0]);
            return nullable ? NullableCopy(inner) : inner;
        }

        return schema;
    }

    private static JsonElement NullableCopy(JsonElement schema)
    {
        var dict = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(schema.GetRawText())!;
        dict["nullable"] = JsonDocument.Parse("true").RootElement;
        return JsonSerializer.SerializeToElement(dict);
    }

    private static void Check(JsonElement schema, JsonElement value, string at, List<string> errors)
    {
        schema = Resolve(schema);
        if (value.ValueKind == JsonValueKind.Null)
        {
            if (!(schema.TryGetProperty("nullable", out var n) && n.GetBoolean()))
            {
                errors.Add($"{at}: null but not nullable");
            }

            return;
        }

        var type = schema.TryGetProperty("type", out var t) ? t.GetString() : null;
        var ok = type switch
        {
            "object" => value.ValueKind == JsonValueKind.Object,
            "array" => value.ValueKind == JsonValueKind.Array,
            "string" => value.ValueKind == JsonValueKind.String,
            "integer" => value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out _),
            "number" => value.ValueKind == JsonValueKind.Number,
            "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
            _ => true,
        };
        if (!ok)
        {
            errors.Add($"{at}: expected {type}, got {value.ValueKind}");
            return;
        }

        if (schema.TryGetProperty("enum", out var en) && !en.EnumerateArray().Any(x => x.ToString() == value.ToString()))
        {
            errors.Add($"{at}: '{value}' not in enum");
        }

        if (type == "string" && schema.TryGetProperty("maxLength", out var max) && value.GetString()!.Length > max.GetInt32())
        {
            errors.Add($"{at}: longer than {max.GetInt32()}");
        }

        if (type == "array" && schema.TryGetProperty("items", out var items))
        {
            var i = 0;
            foreach (var item in value.EnumerateArray())
            {
                Check(items, item, $"{at}[{i++}]", errors);
            }
        }

        if (type != "object")
        {
            return;
        }

        var props = schema.TryGetProperty("properties", out var p) ? p : default;
        if (schema.TryGetProperty("required", out var req))
        {
            foreach (var r in req.EnumerateArray().Select(x => x.GetString()!))
            {
                if (!value.TryGetProperty(r, out _))
                {
                    errors.Add($"{at}: missing required '{r}'");
                }
            }
        }

        foreach (var prop in value.EnumerateObject())
        {
            if (props.ValueKind == JsonValueKind.Object && props.TryGetProperty(prop.Name, out var ps))
            {
                Check(ps, prop.Value, $"{at}.{prop.Name}", errors);
            }
            else if (schema.TryGetProperty("additionalProperties", out var ap) && ap.ValueKind == JsonValueKind.Object)
            {
                Check(ap, prop.Value, $"{at}.{prop.Name}", errors);
            }
            else
            {
                errors.Add($"{at}: undocumented property '{prop.Name}'");
            }
        }
    }
}
