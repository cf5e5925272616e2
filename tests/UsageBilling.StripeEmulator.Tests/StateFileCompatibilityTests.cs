using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace UsageBilling.StripeEmulator.Tests;

/// <summary>
/// A state file written by the emulator before its resources were split into one store each (the commit before
/// "Emulator restructure, step 6") still loads, answers every read as it did then, and is saved back unchanged.
/// </summary>
/// <remarks>
/// <c>Fixtures/state-before-store-split.json</c> was saved by that build after: a webhook endpoint; a product (updated) with
/// a flat, a tiered metered and a one-off price; two meters (one deactivated later); three customers (one deleted); two
/// subscriptions (one to cancel at period end); v1 meter events, one cancelled by an adjustment, one for a missing customer
/// (a thin error event); two v2 stream events; three Checkout Sessions (open, completed with a new customer, expired);
/// then 31 days and 2 hours (the period closed, its invoice finalized). <c>Fixtures/answers-before-store-split.json</c>
/// holds that build's answers to the reads in <see cref="Urls"/>, but for the endpoint's enabled events: that build read them
/// onto the default <c>["*"]</c> and answered <c>["*", "*"]</c>; fixed since, the answer is the saved <c>["*"]</c>.
/// </remarks>
public sealed class StateFileCompatibilityTests
{
    private static readonly string Fixture = Path.Combine(AppContext.BaseDirectory, "Fixtures", "state-before-store-split.json");
    private static readonly string Answers = Path.Combine(AppContext.BaseDirectory, "Fixtures", "answers-before-store-split.json");

    /// <summary>The reads compared: every list and every object the state file holds, and the meters' summaries.</summary>
    internal static IEnumerable<string> Urls(JsonNode state)
    {
        IEnumerable<string> Ids(string table) => state[table]!.AsArray().Select(x => (string)x!["Id"]!);

        yield return "/v1/customers?limit=100";
        yield return "/v1/products?limit=100";
        yield return "/v1/prices?limit=100";
        yield return "/v1/billing/meters?limit=100";
        yield return "/v1/subscriptions?limit=100&status=all";
        yield return "/v1/invoices?limit=100";
        yield return "/v1/checkout/sessions?limit=100";
        yield return "/v1/webhook_endpoints?limit=100";
        yield return "/v1/events?limit=100";
        foreach (var id in Ids("Customers"))
        {
            yield return $"/v1/customers/{id}";
        }

        foreach (var id in Ids("Products"))
        {
            yield return $"/v1/products/{id}";
        }

        foreach (var id in Ids("Prices"))
        {
            yield return $"/v1/prices/{id}";
        }

        foreach (var id in Ids("Subscriptions"))
        {
            yield return $"/v1/subscriptions/{id}";
        }

        foreach (var id in Ids("Invoices"))
        {
            yield return $"/v1/invoices/{id}";
        }

        foreach (var id in Ids("CheckoutSessions"))
        {
            yield return $"/v1/checkout/sessions/{id}";
            yield return $"/v1/checkout/sessions/{id}/line_items";
        }

        foreach (var e in state["Events"]!.AsArray())
        {
            yield return (bool)e!["Thin"]! ? $"/v2/core/events/{e["Id"]}" : $"/v1/events/{e["Id"]}";
        }

        var start = (long)state["SavedAt"]! - (40 * 86400);
        var end = (long)state["SavedAt"]! + 3600;
        foreach (var meter in Ids("Meters"))
        {
            foreach (var customer in Ids("Customers"))
            {
                yield return string.Create(CultureInfo.InvariantCulture, $"/v1/billing/meters/{meter}/event_summaries?customer={customer}&start_time={start}&end_time={end}");
            }
        }
    }

    [Fact]
    public async Task StateFile_SavedBeforeTheStoreSplit_LoadsAnswersAsThenAndSavesBackUnchanged()
    {
        var file = Path.Combine(Path.GetTempPath(), $"stripe-emulator-{Guid.NewGuid():N}.json");
        File.Copy(Fixture, file);
        try
        {
            var saved = JsonNode.Parse(await File.ReadAllTextAsync(Fixture, Emu.Ct))!;
            var expected = JsonNode.Parse(await File.ReadAllTextAsync(Answers, Emu.Ct))!.AsObject();
            var (server, _) = await Emu.StartAsync(o => o.StateFilePath = file);
            await using (server)
            {
                using var http = Emu.Raw(server);

                // Answers that render a page URL name the running emulator's root; the recorded ones say {root}.
                var root = server.BaseUrl.GetLeftPart(UriPartial.Authority);
                string Rooted(string json) => json.Replace(root, "{root}", StringComparison.Ordinal);
                var urls = Urls(saved).ToList();
                Assert.Equal(expected.Count - 1, urls.Count);
                foreach (var url in urls)
                {
                    using var response = await http.GetAsync(url, Emu.Ct);
                    var answer = new JsonObject { ["status"] = (int)response.StatusCode, ["body"] = JsonNode.Parse(Rooted(await response.Content.ReadAsStringAsync(Emu.Ct))) };
                    Assert.True(JsonNode.DeepEquals(expected[url], answer), $"{url} answered\n{answer}\ninstead of\n{expected[url]}");
                }

                var events = JsonSerializer.SerializeToNode(await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
                Assert.True(JsonNode.DeepEquals(expected["admin:meter_events"], events), $"The admin API's meter events differ:\n{events}");
            }

            // Saved on dispose: the same content (and so the same format), an endpoint's enabled events included (loading
            // once added the saved list to the default ["*"], so a filtered endpoint came back receiving everything).
            var again = JsonNode.Parse(await File.ReadAllTextAsync(file, Emu.Ct))!;
            Assert.Equal(["*"], again["Endpoints"]![0]!["EnabledEvents"]!.AsArray().Select(x => (string)x!));
            Assert.True(JsonNode.DeepEquals(saved, again), $"The state saved back differs:\n{again}");
        }
        finally
        {
            File.Delete(file);
        }
    }
}
