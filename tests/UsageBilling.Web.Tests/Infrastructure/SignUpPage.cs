using Microsoft.Playwright;

namespace UsageBilling.Web.Tests.Infrastructure;

/// <summary>The browser tests' sign-up through the form.</summary>
internal static class SignUpPage
{
    /// <summary>Fills the open sign-up form with <paramref name="email"/> and the tests' password, submits it and waits until it lands on /plans; on a timeout, says where the page is and what it shows.</summary>
    /// <param name="page">The page showing the sign-up form.</param>
    /// <param name="email">The new account's email.</param>
    public static async Task SignUpAsync(IPage page, string email)
    {
        await page.GetByTestId("email").FillAsync(email);
        await page.GetByTestId("password").FillAsync("correct-horse-1");
        await page.GetByTestId("register").ClickAsync();
        await PageLanding.WaitAsync(page, "/plans", "Signing up");
    }
}
